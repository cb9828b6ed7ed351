-- OAuth 2.1 authorization server for MCP clients: clients, authorization codes, consent.

-- A client: registered dynamically (RFC 7591), by an admin, or known by its metadata document
-- URL (CIMD; the row caches what the document said so grants can refer to it).
create table oauth_clients (
    id integer primary key autoincrement,
    client_id text not null,
    kind text not null check (kind in ('dynamic', 'admin', 'cimd')),
    name text not null,
    -- JSON array of exact redirect URIs.
    redirect_uris text not null,
    token_endpoint_auth_method text not null
        check (token_endpoint_auth_method in ('none', 'client_secret_basic', 'client_secret_post')),
    -- SHA-256 (hex) of the client secret; null for public clients. Never the secret itself.
    secret_hash text,
    application_type text not null default 'web' check (application_type in ('web', 'native')),
    client_uri text,
    logo_uri text,
    scope text,
    -- The IP that registered it (dynamic clients), for investigations.
    registered_ip text,
    created_at bigint not null,
    updated_at bigint not null,
    revoked_at bigint,
    constraint oauth_clients_client_id_key unique (client_id)
);

-- Authorization codes: stored only as SHA-256, single use, short-lived. A code presented twice
-- revokes the session issued from it.
create table oauth_codes (
    code_hash text primary key,
    client_key bigint not null references oauth_clients (id) on delete cascade,
    user_id bigint not null references users (id) on delete cascade,
    redirect_uri text not null,
    code_challenge text not null,
    resource text not null,
    scope text not null,
    created_at bigint not null,
    expires_at bigint not null,
    used_at bigint,
    session_id text
);
create index oauth_codes_expires_at on oauth_codes (expires_at);

-- Consent a user gave a client (remembered; revoking it also ends the client's sessions).
create table oauth_grants (
    user_id bigint not null references users (id) on delete cascade,
    client_key bigint not null references oauth_clients (id) on delete cascade,
    scope text not null,
    -- The MCP endpoints consented to (space-separated canonical URLs).
    resources text not null default '',
    created_at bigint not null,
    last_used_at bigint,
    primary key (user_id, client_key)
);
create index oauth_grants_client_key on oauth_grants (client_key);

-- Sessions started by the OAuth flow: the client, and the resource their tokens are bound to.
alter table sessions add column client_key bigint references oauth_clients (id) on delete cascade;
alter table sessions add column resource text;
alter table sessions add column scope text;
create index sessions_client_key on sessions (client_key);

-- OAuth credentials toward backends: the tokens the gateway holds (one row per server for a
-- client-credentials or admin-connected server, one per server x user for per-user connected
-- accounts) and the authorization flows in progress. The server's OAuth configuration itself
-- (token endpoint, client, scope, ...) is the sealed `mcp_servers.credential` of kind
-- 'oauth_client_credentials' | 'oauth_admin' | 'oauth_user'.

create table backend_tokens (
    server_id bigint not null references mcp_servers (id) on delete cascade,
    -- 0: the server's own credential; otherwise the user whose connected account this is.
    user_id bigint not null,
    -- Sealed with SecretBox (`backend_tokens:<server>:<user>:access` / `:refresh`).
    access_token blob,
    refresh_token blob,
    -- Unix seconds; null when the authorization server did not say.
    expires_at bigint,
    scope text,
    -- Moved by every write of new tokens: a refresh writes only over the version it read.
    version bigint not null default 0,
    -- Unix milliseconds until which one replica holds the right to refresh (single flight).
    lease_until bigint not null default 0,
    -- 'ok' | 'failed' (the refresh token or client was refused: reconnect needed).
    status text not null default 'ok' check (status in ('ok', 'failed')),
    last_refresh_at bigint,
    last_error text,
    last_error_at bigint,
    refresh_count bigint not null default 0,
    connected_at bigint not null,
    primary key (server_id, user_id)
);
create index backend_tokens_user on backend_tokens (user_id);

-- An authorization-code flow toward a backend's authorization server, between "connect" and
-- the callback (10 minutes, single use). `state_hash` is SHA-256 of the state parameter,
-- `browser_hash` SHA-256 of the cookie set on the browser that started it; the PKCE verifier
-- is sealed (`backend_oauth_pending:<state_hash>`).
create table backend_oauth_pending (
    state_hash text primary key,
    server_id bigint not null references mcp_servers (id) on delete cascade,
    user_id bigint not null,
    -- Who started it (the admin, for a server's own account).
    started_by bigint not null,
    browser_hash text not null,
    verifier blob not null,
    redirect_uri text not null,
    -- The authorization server it went to (the code goes only to its token endpoint).
    issuer text not null,
    return_to text not null,
    expires_at bigint not null
);
create index backend_oauth_pending_expires on backend_oauth_pending (expires_at);

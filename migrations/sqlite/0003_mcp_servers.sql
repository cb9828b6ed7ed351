-- MCP servers registry, per-user access, and proxied-request activity.

create table mcp_servers (
    id integer primary key autoincrement,
    name text not null,
    url text not null,
    description text,
    enabled bigint not null default 1 check (enabled in (0, 1)),
    transport text not null check (transport in ('streamable-http', 'sse', 'auto')),
    timeout_ms bigint not null,
    -- 'bearer' | 'basic' | 'header', or null for none.
    credential_type text,
    credential_header text,
    -- AES-256-GCM ciphertext of the credential secret (server/src/keys.rs), never plaintext.
    credential blob,
    -- Last 4 characters of the secret, for display.
    credential_hint text,
    created_at bigint not null,
    updated_at bigint not null,
    constraint mcp_servers_name_key unique (name)
);

-- A row grants a user access to a server; no row means no access (default deny).
create table mcp_permissions (
    user_id bigint not null references users (id) on delete cascade,
    server_id bigint not null references mcp_servers (id) on delete cascade,
    granted_at bigint not null,
    primary key (user_id, server_id)
);
create index mcp_permissions_server_id on mcp_permissions (server_id);

create table mcp_activity (
    id integer primary key autoincrement,
    at bigint not null,
    user_id bigint,
    username text,
    server text not null,
    method text not null,
    tool text,
    status text not null,
    http_status bigint not null,
    latency_ms bigint not null,
    bytes_in bigint not null,
    bytes_out bigint not null
);
create index mcp_activity_at on mcp_activity (at);

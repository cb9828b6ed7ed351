-- Replicas that share everything through the database: client sessions of `/mcp/{server}`,
-- aggregated sessions ended by DELETE, single-use nonces (live-feed tickets), and the shared
-- rate-limit budgets replicas lease from.

-- A `/mcp/{server}` client session, so any replica can serve it. The client's session id is
-- stored only as its SHA-256; the backend's session id is sealed (`mcp_client_sessions:<hash>:backend`).
create table mcp_client_sessions (
    id_hash text primary key,
    user_id bigint not null references users (id) on delete cascade,
    server_id bigint not null references mcp_servers (id) on delete cascade,
    client_version text not null,
    capabilities text,
    client_info text,
    upstream text not null check (upstream in ('http', 'modern', 'legacy')),
    backend_session text,
    backend_version text,
    created_at bigint not null,
    last_seen bigint not null
);
create index mcp_client_sessions_user on mcp_client_sessions (user_id, created_at);
create index mcp_client_sessions_seen on mcp_client_sessions (last_seen);

-- Aggregated (`/mcp`) sessions ended by DELETE (by their random session key), until their ids
-- would expire.
create table mcp_ended_sessions (
    session_key text primary key,
    user_id bigint not null,
    expires_at bigint not null
);
create index mcp_ended_sessions_expires on mcp_ended_sessions (expires_at);

-- Single-use values (live-feed ticket nonces), until they expire.
create table used_nonces (
    nonce text primary key,
    expires_at bigint not null
);
create index used_nonces_expires on used_nonces (expires_at);

-- Shared GCRA state of the MCP rate limits (used on Postgres only; kept here so both schemas
-- match): a key's theoretical arrival time in microseconds of the database clock.
create table rate_budgets (
    key text primary key,
    tat bigint not null
);

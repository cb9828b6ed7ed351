-- Live-editable rate limits with overrides, suspicious-payload detection per server, richer
-- activity records.

-- Settings edited through the admin API (they win over the environment): JSON values by key.
create table settings (
    key text primary key,
    value text not null,
    updated_at bigint not null
);

-- Per-minute MCP limits overriding the defaults: for one user (their overall budget), for one
-- server (each user's budget on it), or for one tool of a server (each user's budget for it).
create table rate_limit_overrides (
    id integer primary key autoincrement,
    kind text not null check (kind in ('user', 'server', 'tool')),
    user_id bigint references users (id) on delete cascade,
    server_id bigint references mcp_servers (id) on delete cascade,
    tool text,
    per_minute bigint not null check (per_minute >= 0),
    created_at bigint not null,
    check ((kind = 'user' and user_id is not null and server_id is null and tool is null)
        or (kind = 'server' and server_id is not null and user_id is null and tool is null)
        or (kind = 'tool' and server_id is not null and tool is not null and user_id is null))
);

-- 'off', 'log' (a suspicious_payload event and a flag on the activity record) or 'block'.
alter table mcp_servers add column detection text not null default 'log'
    check (detection in ('off', 'log', 'block'));

alter table mcp_activity add column client_name text;
alter table mcp_activity add column rpc_error_code bigint;
alter table mcp_activity add column suspicious bigint not null default 0;

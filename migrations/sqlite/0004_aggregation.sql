-- Aggregated /mcp: per-server tool-name prefixes and per-tool authorization rules.

-- The prefix that makes this server's tool and prompt names unique on the aggregated endpoint;
-- null means the server's name. No two servers may end up with the same prefix.
alter table mcp_servers add column tool_prefix text;
create unique index mcp_servers_prefix_key on mcp_servers ((coalesce(tool_prefix, name)));

-- Allow/deny rules on a server's tools, for a user or for one API key (which narrows its
-- owner's rules further). Patterns are exact names or globs with * and ?, on the backend's own
-- tool names. A deny that matches wins; when allow rules exist, a tool must match one.
create table mcp_tool_rules (
    id integer primary key autoincrement,
    user_id bigint references users (id) on delete cascade,
    api_key_id bigint references api_keys (id) on delete cascade,
    server_id bigint not null references mcp_servers (id) on delete cascade,
    pattern text not null,
    effect text not null check (effect in ('allow', 'deny')),
    created_at bigint not null,
    check ((user_id is null) <> (api_key_id is null))
);
create index mcp_tool_rules_user_id on mcp_tool_rules (user_id);
create index mcp_tool_rules_api_key_id on mcp_tool_rules (api_key_id);
create index mcp_tool_rules_server_id on mcp_tool_rules (server_id);

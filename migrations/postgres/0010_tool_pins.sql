-- Tool-definition pinning ("rug pull" protection): per server a mode, and per tool the
-- definition an admin approved (or the first one seen) and the one the backend sends now.
-- Existing servers start at 'warn' (report changes, change nothing); servers created from
-- here on default to 'quarantine' in the API.

alter table mcp_servers add column tool_pinning text not null default 'warn'
    check (tool_pinning in ('off', 'warn', 'quarantine'));

create table tool_pins (
    server_id bigint not null references mcp_servers (id) on delete cascade,
    name text not null,
    -- SHA-256 (hex) of the canonical JSON of the approved definition (name, title,
    -- description, inputSchema, outputSchema, annotations); null for a tool never approved.
    approved_fp text,
    approved_def text,
    -- The definition the backend sent last.
    seen_fp text not null,
    seen_def text not null,
    -- 'approved': seen = approved; 'pending': differs (or new), awaiting an admin;
    -- 'rejected': an admin refused the seen definition.
    status text not null check (status in ('approved', 'pending', 'rejected')),
    first_seen bigint not null,
    changed_at bigint not null,
    decided_at bigint,
    decided_by text,
    primary key (server_id, name)
);

-- Security scans of MCP servers (the audit scanner): one row per scan, its progress while it
-- runs and its report (JSON text) when done. The bearer token a scan used is never stored.

create table audit_scans (
    id integer primary key autoincrement,
    target text not null,
    server_id bigint,
    server_name text,
    -- 'running' | 'done' | 'failed' | 'cancelled'
    status text not null check (status in ('running', 'done', 'failed', 'cancelled')),
    requested_by text not null,
    started_at bigint not null,
    finished_at bigint,
    progress bigint not null default 0,
    total bigint not null default 0,
    high bigint not null default 0,
    medium bigint not null default 0,
    low bigint not null default 0,
    info bigint not null default 0,
    error text,
    report text
);
create index audit_scans_started on audit_scans (started_at);

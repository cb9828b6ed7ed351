-- no-transaction
-- The user portal: sessions of a third audience (`portal`), and a user's own activity listed
-- newest first.
--
-- SQLite cannot change a check constraint in place: `sessions` is rebuilt (SQLite's documented
-- twelve steps), with foreign keys off so that dropping the old table does not cascade to
-- `refresh_tokens`, in one transaction (the rows are copied as they are, so every reference
-- that held before holds after).
pragma foreign_keys = off;
begin immediate;

create table sessions_new (
    id text primary key,
    user_id bigint not null references users (id) on delete cascade,
    audience text not null check (audience in ('mcp', 'admin', 'portal')),
    created_at bigint not null,
    expires_at bigint not null,
    revoked_at bigint,
    revoked_reason text,
    client_key bigint references oauth_clients (id) on delete cascade,
    resource text,
    scope text
);
insert into sessions_new (id, user_id, audience, created_at, expires_at, revoked_at,
                          revoked_reason, client_key, resource, scope)
    select id, user_id, audience, created_at, expires_at, revoked_at, revoked_reason,
           client_key, resource, scope
    from sessions;
drop table sessions;
alter table sessions_new rename to sessions;
create index sessions_user_id on sessions (user_id);
create index sessions_client_key on sessions (client_key);

create index if not exists mcp_activity_user on mcp_activity (user_id, id);

commit;
pragma foreign_keys = on;

-- The user portal: sessions of a third audience (`portal`), and a user's own activity listed
-- newest first.
alter table sessions drop constraint sessions_audience_check;
alter table sessions add constraint sessions_audience_check
    check (audience in ('mcp', 'admin', 'portal'));

create index if not exists mcp_activity_user on mcp_activity (user_id, id);

-- Teams: a team owns MCP servers and has members, each a `member` or a `team_admin` of it.
-- Global admins (users.role = 'admin') see and manage everything. A user may use a server
-- only when granted it and a member of its team. Existing data goes to the default team (id 1),
-- so a single-team install looks exactly as before.
create table teams (
    id integer primary key autoincrement,
    name text not null,
    created_at bigint not null,
    constraint teams_name_key unique (name)
);
insert into teams (id, name, created_at) values (1, 'Default', 0);

create table team_members (
    team_id bigint not null references teams (id) on delete cascade,
    user_id bigint not null references users (id) on delete cascade,
    role text not null check (role in ('member', 'team_admin')),
    added_at bigint not null,
    primary key (team_id, user_id)
);
create index team_members_user on team_members (user_id);
insert into team_members (team_id, user_id, role, added_at) select 1, id, 'member', 0 from users;

-- The team of a server. A team with servers cannot be deleted (the gateway refuses it; SQLite
-- cannot add a column with a foreign key and a non-null default, Postgres also restricts).
alter table mcp_servers add column team_id bigint not null default 1;
create index mcp_servers_team on mcp_servers (team_id);

-- Which team a server name belongs to, kept after the server is deleted, so the activity and
-- security events recorded under a name (they store the name) stay with that team: another
-- team cannot take the name over and read its history. When a team is deleted its names keep
-- no team (only global admins see their history) and stay taken.
create table server_names (
    name text primary key,
    team_id bigint references teams (id) on delete set null
);
insert into server_names (name, team_id) select name, 1 from mcp_servers;
-- History under names no server has now. Never `*`, the aggregated endpoint's records of
-- calls not routed to one server: those stay global admins' only.
insert into server_names (name, team_id)
    select distinct server, 1 from mcp_activity
    where server <> '*' and server not in (select name from server_names);
insert into server_names (name, team_id)
    select distinct server, 1 from security_events
    where server is not null and server <> '*' and server not in (select name from server_names);

-- The team an audit entry concerns (its servers, grants, rules, pins), for team admins' view.
alter table audit_log add column team_id bigint;
create index audit_log_team on audit_log (team_id, id);

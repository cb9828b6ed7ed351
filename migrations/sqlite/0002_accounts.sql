-- Accounts: first-run setup lock, sessions with rotating refresh tokens, API keys,
-- login lockout, security events and the admin audit log.

-- One row at most: inserting it is how the first admin is claimed, so concurrent setup calls
-- create at most one admin.
create table setup_lock (
    id bigint primary key check (id = 1),
    created_at bigint not null
);

-- A login session (a refresh-token family). Access tokens carry its id as `sid`; revoking the
-- session revokes every access and refresh token issued in it.
create table sessions (
    id text primary key,
    user_id bigint not null references users (id) on delete cascade,
    audience text not null check (audience in ('mcp', 'admin')),
    created_at bigint not null,
    expires_at bigint not null,
    revoked_at bigint,
    revoked_reason text
);
create index sessions_user_id on sessions (user_id);

create table refresh_tokens (
    token_hash text primary key,
    session_id text not null references sessions (id) on delete cascade,
    created_at bigint not null,
    expires_at bigint not null,
    used_at bigint
);
create index refresh_tokens_session_id on refresh_tokens (session_id);

create table api_keys (
    id integer primary key autoincrement,
    user_id bigint not null references users (id) on delete cascade,
    name text not null,
    -- The first characters of the secret, shown in lists so a key can be recognised.
    prefix text not null,
    -- SHA-256 of the whole secret (hex); the secret itself is never stored.
    key_hash text not null,
    -- JSON array of MCP server names the key is restricted to; null means every server the
    -- user may use.
    servers text,
    created_at bigint not null,
    expires_at bigint,
    last_used_at bigint,
    revoked_at bigint,
    constraint api_keys_key_hash_key unique (key_hash)
);
create index api_keys_user_id on api_keys (user_id);

-- Failed-login state per lowercased username, whether or not such a user exists, so that a
-- lockout reveals nothing about which usernames are real.
create table login_failures (
    username_key text primary key,
    failures bigint not null,
    locked_until bigint,
    updated_at bigint not null
);

create table security_events (
    id integer primary key autoincrement,
    event_type text not null,
    severity text not null check (severity in ('info', 'low', 'medium', 'high', 'critical')),
    user_id bigint,
    username text,
    ip text,
    user_agent text,
    endpoint text,
    server text,
    tool text,
    -- JSON object; never contains secrets.
    details text,
    created_at bigint not null
);
create index security_events_created_at on security_events (created_at);
create index security_events_type on security_events (event_type);

create table audit_log (
    id integer primary key autoincrement,
    actor_user_id bigint,
    actor_username text not null,
    action text not null,
    target_type text not null,
    target_id text,
    -- JSON snapshots without secrets.
    before_state text,
    after_state text,
    ip text,
    created_at bigint not null
);
create index audit_log_created_at on audit_log (created_at);

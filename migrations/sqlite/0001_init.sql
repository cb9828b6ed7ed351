-- Foundation: users and the JWT signing keys.
-- Timestamps are Unix seconds (BIGINT) on both databases.

create table users (
    id integer primary key autoincrement,
    username text not null,
    email text,
    password_hash text not null,
    role text not null check (role in ('admin', 'user')),
    enabled bigint not null default 1 check (enabled in (0, 1)),
    created_at bigint not null,
    updated_at bigint not null,
    last_login_at bigint,
    constraint users_username_key unique (username)
);

create table signing_keys (
    kid text primary key,
    algorithm text not null,
    -- AES-256-GCM ciphertext of the private key (see server/src/keys.rs), never plaintext.
    private_key blob not null,
    -- base64url of the raw public key, as published in the JWKS.
    public_key text not null,
    created_at bigint not null,
    retired_at bigint
);

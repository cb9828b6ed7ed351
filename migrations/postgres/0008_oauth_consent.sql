-- OAuth consent and registration that cannot be widened or abused.

-- Remembered consent per user × client × resource × redirect URI, with the exact scopes
-- approved there. A request is silent only when every scope it asks for was approved for its
-- resource and the redirect URI the user saw; grants remembered before this table existed ask
-- again once.
create table oauth_grant_scopes (
    user_id bigint not null,
    client_key bigint not null,
    resource text not null,
    redirect_uri text not null,
    scope text not null,
    approved_at bigint not null,
    primary key (user_id, client_key, resource, redirect_uri),
    foreign key (user_id, client_key) references oauth_grants (user_id, client_key)
        on delete cascade
);

-- Counting a registering address's unused clients.
create index oauth_clients_registered_ip on oauth_clients (registered_ip);

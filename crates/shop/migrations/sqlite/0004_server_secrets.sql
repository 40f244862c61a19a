-- Secrets every instance must agree on (the key that signs users' tokens), made once
-- by the first instance to start against this database.
create table server_secrets (
    name text primary key,
    value text not null
);

-- Accounts and sessions: email and password, status, API-token versions, login
-- sessions with rotating refresh tokens, and the log of revocations that every
-- instance follows to refuse revoked tokens without reading the database per request.

alter table users add column email text;
-- the email lowercased: emails are unique regardless of case
alter table users add column email_key text;
create unique index users_email_key on users (email_key);
-- an Argon2id PHC string; null for an account without a password
alter table users add column password_hash text;
alter table users add column status text not null default 'ACTIVE'
    check (status in ('ACTIVE', 'SUSPENDED'));
-- API tokens of a lower version no longer work (0: the `<id>.<sig>` token)
alter table users add column api_token_version bigint not null default 0
    check (api_token_version >= 0);

create table sessions (
    id integer primary key,
    user_id bigint not null references users (id),
    created_at bigint not null,
    -- set when the session ends (logout, or a refresh token presented twice)
    ended_at bigint
);
create index sessions_user on sessions (user_id);

-- Refresh tokens, by SHA-256 of the token (the token itself is never stored). Each
-- works once: `used_at` is set by the refresh that spends it, and a spent token
-- presented again ends its session.
create table refresh_tokens (
    token_sha256 text primary key,
    session_id bigint not null references sessions (id),
    expires_at bigint not null,
    used_at bigint
);
create index refresh_tokens_session on refresh_tokens (session_id);

-- Every change that makes tokens stop (or start again) working, in order. Instances
-- load it at start and poll it (and hear it on Redis pub/sub where configured).
-- kind API_TOKENS: value = the lowest API-token version that still works;
-- kind STATUS: value = 1 suspended, 0 active; kind SESSION: value = the ended session.
create table revocations (
    id integer primary key,
    user_id bigint not null references users (id),
    kind text not null check (kind in ('API_TOKENS', 'STATUS', 'SESSION')),
    value bigint not null,
    at bigint not null
);

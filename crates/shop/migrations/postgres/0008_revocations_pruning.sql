-- Old rows of `revocations` are pruned: a session's once its access tokens have
-- expired, an API-token version's or a status's once a newer row of the same user
-- and kind says more. This index finds the newer row.
create index revocations_user_kind on revocations (user_id, kind, id);

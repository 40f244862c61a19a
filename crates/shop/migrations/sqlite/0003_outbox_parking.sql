-- An event that failed SHOP_OUTBOX_MAX_ATTEMPTS times is parked: the relay leaves it
-- (and the later events of its order, which must not overtake it) until an admin
-- retries it.
alter table outbox_events add column parked_at bigint;
create index outbox_events_order on outbox_events (order_id, seq);

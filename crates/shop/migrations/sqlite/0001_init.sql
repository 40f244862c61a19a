-- Timestamps are integer milliseconds since the Unix epoch (UTC).
-- Money is integer won.

create table users (
    id integer primary key,
    name text not null,
    -- the last line of defence: a balance never goes below zero
    balance bigint not null default 0 check (balance >= 0),
    created_at bigint not null
);

create table products (
    id integer primary key,
    name text not null,
    price bigint not null check (price >= 0),
    -- what can still be ordered now: on hand minus what PENDING orders hold
    stock bigint not null check (stock >= 0),
    created_at bigint not null,
    updated_at bigint not null
);

create table coupons (
    id integer primary key,
    name text not null,
    discount_type text not null check (discount_type in ('FIXED', 'RATE')),
    discount_value bigint not null check (discount_value > 0),
    total_quantity bigint not null check (total_quantity > 0),
    -- never above total: the counter that decides first come, first served
    issued_quantity bigint not null default 0
        check (issued_quantity >= 0 and issued_quantity <= total_quantity),
    min_order_amount bigint not null default 0 check (min_order_amount >= 0),
    issue_starts_at bigint,
    issue_ends_at bigint,
    valid_days bigint not null check (valid_days > 0),
    created_at bigint not null
);

create table user_coupons (
    id integer primary key,
    coupon_id bigint not null references coupons (id),
    user_id bigint not null references users (id),
    issued_at bigint not null,
    expires_at bigint not null,
    -- the order that holds (PENDING) or used (PAID) it; null when available
    order_id bigint,
    -- one user gets a given coupon at most once
    unique (coupon_id, user_id)
);
create index user_coupons_user on user_coupons (user_id, id);

create table orders (
    id integer primary key,
    user_id bigint not null references users (id),
    status text not null check (status in ('PENDING', 'PAID', 'CANCELLED', 'EXPIRED')),
    user_coupon_id bigint references user_coupons (id),
    total_amount bigint not null check (total_amount >= 0),
    discount_amount bigint not null check (discount_amount >= 0),
    final_amount bigint not null check (final_amount >= 0),
    created_at bigint not null,
    expires_at bigint not null,
    paid_at bigint,
    cancelled_at bigint
);
create index orders_user on orders (user_id, id);
-- the expiry worker scans only PENDING orders, by due time
create index orders_pending_due on orders (expires_at) where status = 'PENDING';
-- the ranking scans PAID orders by payment time
create index orders_paid_at on orders (paid_at) where status = 'PAID';

create table order_items (
    id integer primary key,
    order_id bigint not null references orders (id),
    product_id bigint not null references products (id),
    name text not null,
    unit_price bigint not null,
    quantity bigint not null check (quantity > 0),
    amount bigint not null
);
create index order_items_order on order_items (order_id, id);

create table balance_ledger (
    id integer primary key,
    user_id bigint not null references users (id),
    kind text not null check (kind in ('CHARGE', 'PAYMENT', 'REFUND')),
    -- signed: positive for CHARGE and REFUND, negative for PAYMENT
    amount bigint not null,
    balance_after bigint not null check (balance_after >= 0),
    order_id bigint references orders (id),
    created_at bigint not null
);
create index balance_ledger_user on balance_ledger (user_id, id);
-- a payment happens at most once, and so does its refund
create unique index balance_ledger_one_payment on balance_ledger (order_id) where kind = 'PAYMENT';
create unique index balance_ledger_one_refund on balance_ledger (order_id) where kind = 'REFUND';

-- The outbox: written in the same transaction as the payment or cancel it reports.
create table outbox_events (
    seq integer primary key,
    id text not null unique,
    event_type text not null,
    order_id bigint not null,
    payload text not null,
    created_at bigint not null,
    attempts bigint not null default 0,
    next_attempt_at bigint not null,
    last_error text,
    delivered_at bigint
);
create index outbox_undelivered on outbox_events (seq) where delivered_at is null;

-- Idempotency keys, scoped to the caller. state: 'IN_PROGRESS' while the first
-- request runs, then 'DONE' with the stored answer.
create table idempotency_keys (
    scope text not null,
    idem_key text not null,
    fingerprint text not null,
    state text not null check (state in ('IN_PROGRESS', 'DONE')),
    status_code bigint,
    body text,
    created_at bigint not null,
    primary key (scope, idem_key)
);
create index idempotency_keys_created on idempotency_keys (created_at);

-- Every change to a product's stock by an admin (creation included), so that
-- stock = sum(adjustments) - quantities held by PENDING and PAID orders can be checked.
create table stock_adjustments (
    id integer primary key,
    product_id bigint not null references products (id),
    delta bigint not null,
    created_at bigint not null
);
create index stock_adjustments_product on stock_adjustments (product_id);

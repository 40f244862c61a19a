-- Fulfilment, payment records, coupon management and history, the daily charge limit,
-- the balance before each ledger entry, and the won of each hour's sales.
--
-- SQLite cannot change a CHECK constraint in place: orders is rebuilt to admit SHIPPED
-- and DELIVERED. Its rows are copied aside, the table dropped and made again, and the
-- rows put back: the rows referring to orders (items, ledger) are orphaned only until
-- their orders return, which deferred foreign keys allow within the transaction.
PRAGMA defer_foreign_keys = ON;

create table orders_before_0006 as select * from orders;
drop table orders;
create table orders (
    id integer primary key,
    user_id bigint not null references users (id),
    status text not null check (status in
        ('PENDING', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED', 'EXPIRED')),
    user_coupon_id bigint references user_coupons (id),
    total_amount bigint not null check (total_amount >= 0),
    discount_amount bigint not null check (discount_amount >= 0),
    final_amount bigint not null check (final_amount >= 0),
    created_at bigint not null,
    expires_at bigint not null,
    paid_at bigint,
    cancelled_at bigint,
    shipped_at bigint,
    delivered_at bigint,
    tracking_number text
);
insert into orders (id, user_id, status, user_coupon_id, total_amount, discount_amount,
    final_amount, created_at, expires_at, paid_at, cancelled_at)
select id, user_id, status, user_coupon_id, total_amount, discount_amount, final_amount,
    created_at, expires_at, paid_at, cancelled_at from orders_before_0006;
drop table orders_before_0006;
create index orders_user on orders (user_id, id);
-- the expiry worker scans only PENDING orders, by due time
create index orders_pending_due on orders (expires_at) where status = 'PENDING';
-- the ranking scans paid orders (PAID, SHIPPED, DELIVERED) by payment time
create index orders_paid_at on orders (paid_at) where paid_at is not null;
-- the admin's list, by status, newest first
create index orders_status on orders (status, id);

-- Every payment attempt of an order: SUCCEEDED, or FAILED with its code.
create table payments (
    id integer primary key,
    order_id bigint not null references orders (id),
    status text not null check (status in ('SUCCEEDED', 'FAILED')),
    amount bigint not null check (amount >= 0),
    failure_code text,
    at bigint not null
);
create index payments_order on payments (order_id, id);
insert into payments (order_id, status, amount, failure_code, at)
select id, 'SUCCEEDED', final_amount, null, paid_at from orders where paid_at is not null;

alter table balance_ledger add column balance_before bigint not null default 0;
update balance_ledger set balance_before = balance_after - amount;

-- Charges of the day (in SHOP_TIMEZONE; day = days since 1970-01-01 there).
alter table users add column charge_day bigint;
alter table users add column charged_today bigint not null default 0
    check (charged_today >= 0);

alter table coupons add column status text not null default 'ACTIVE'
    check (status in ('ACTIVE', 'INACTIVE'));
-- a coupon limited to one product discounts that product's lines only
alter table coupons add column product_id bigint references products (id);

-- when the order holding it took it (null while available)
alter table user_coupons add column used_at bigint;
update user_coupons set used_at = (select o.created_at from orders o where o.id = user_coupons.order_id)
where order_id is not null;

-- What happened to each issued coupon (EXPIRED is read from its expiry).
create table coupon_history (
    id integer primary key,
    user_coupon_id bigint not null references user_coupons (id),
    action text not null check (action in ('ISSUED', 'USED', 'RESTORED')),
    order_id bigint,
    at bigint not null
);
create index coupon_history_coupon on coupon_history (user_coupon_id, id);
insert into coupon_history (user_coupon_id, action, order_id, at)
select id, 'ISSUED', null, issued_at from user_coupons;
insert into coupon_history (user_coupon_id, action, order_id, at)
select uc.id, 'USED', uc.order_id, uc.used_at from user_coupons uc where uc.order_id is not null;

-- The won of the counted lines (unit price times quantity, before discounts).
alter table product_sales_hourly add column amount bigint not null default 0;
update product_sales_hourly set amount = coalesce((
    select sum(i.amount) from orders o join order_items i on i.order_id = o.id
    where o.paid_at is not null and o.status in ('PAID', 'SHIPPED', 'DELIVERED')
      and o.paid_at / 3600000 = product_sales_hourly.hour
      and i.product_id = product_sales_hourly.product_id), 0);


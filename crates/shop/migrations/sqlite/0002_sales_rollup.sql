-- Quantity sold per product per hour of payment (hour = paid_at / 3,600,000 ms),
-- kept in the transaction that pays or refunds, so the ranking reads at most a few
-- thousand rows however many orders there are, and is exact.
create table product_sales_hourly (
    hour bigint not null,
    product_id bigint not null,
    quantity bigint not null,
    primary key (hour, product_id)
);

insert into product_sales_hourly (hour, product_id, quantity)
select o.paid_at / 3600000, i.product_id, sum(i.quantity)
from orders o join order_items i on i.order_id = o.id
where o.status = 'PAID'
group by o.paid_at / 3600000, i.product_id;

-- Catalog: content, status, options and variants; carts.
--
-- Variants hold the stock. Every existing product becomes one default variant with
-- the same id (options {}), holding its price and stock, so orders, adjustments and
-- ids already handed out keep meaning the same thing.

alter table products add column description text not null default '';
-- INACTIVE products leave the public list and the ranking and cannot be ordered.
alter table products add column status text not null default 'ACTIVE'
    check (status in ('ACTIVE', 'INACTIVE'));
-- [{"name": "size", "values": ["S", "M"]}], in the order shown
alter table products add column options text not null default '[]';
-- [{"url": "...", "alt": "..."}]; the first is the main image
alter table products add column images text not null default '[]';

create table variants (
    id integer primary key,
    product_id bigint not null references products (id),
    sku text,
    -- {"size": "M", "colour": "red"}, keys sorted: one value of each product option
    options text not null default '{}',
    price bigint not null check (price >= 0),
    -- what can still be ordered now: on hand minus what open orders hold
    stock bigint not null check (stock >= 0),
    created_at bigint not null,
    updated_at bigint not null,
    -- no two variants of a product name the same values
    unique (product_id, options)
);
create index variants_product on variants (product_id, id);
create unique index variants_sku on variants (sku) where sku is not null;

insert into variants (id, product_id, sku, options, price, stock, created_at, updated_at)
select id, id, null, '{}', price, stock, created_at, updated_at from products;

-- products.price is now the lowest price of its variants (kept by the admin routes),
-- products.stock the sum of theirs (computed on read).
alter table products drop column stock;

alter table order_items add column variant_id bigint references variants (id);
alter table order_items add column options text not null default '{}';
update order_items set variant_id = product_id;
create index order_items_variant on order_items (variant_id);

alter table stock_adjustments add column variant_id bigint references variants (id);
update stock_adjustments set variant_id = product_id;
create index stock_adjustments_variant on stock_adjustments (variant_id);

-- Lists: newest first, by price or by name; the public list shows ACTIVE ones.
create index products_status_id on products (status, id);
create index products_status_price on products (status, price, id);
create index products_status_name on products (status, name, id);

-- Search: names by any part, case-insensitive (trigrams: a LIKE '%q%' of three or
-- more characters is answered from the index).
create virtual table products_search using fts5 (
    name, content = 'products', content_rowid = 'id', tokenize = 'trigram'
);
insert into products_search (rowid, name) select id, name from products;
create trigger products_search_insert after insert on products begin
    insert into products_search (rowid, name) values (new.id, new.name);
end;
create trigger products_search_update after update of name on products begin
    insert into products_search (products_search, rowid, name) values ('delete', old.id, old.name);
    insert into products_search (rowid, name) values (new.id, new.name);
end;

-- A user's cart: lines to buy later, at current prices; it holds no stock.
create table carts (
    user_id integer primary key references users (id),
    updated_at bigint not null
);
create table cart_items (
    user_id bigint not null references carts (user_id),
    variant_id bigint not null references variants (id),
    quantity bigint not null check (quantity >= 1),
    added_at bigint not null,
    primary key (user_id, variant_id)
);

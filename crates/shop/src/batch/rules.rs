//! The rules of every batched write, decided in memory. The writer reads the rows a
//! batch touches into a [`State`], then [`decide`] applies the jobs one after another:
//! job k sees what jobs before it did, and a refused job changes nothing (every check
//! runs before the first change; the exceptions are the contract's: a payment or
//! cancel that finds its order past its time expires it, and a payment refused for the
//! balance is recorded as a failed attempt). No I/O happens here, so the rules are
//! unit- and property-testable; the changes accumulate in [`Changes`] for one bulk
//! write.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use crate::balance::{Balance, BalanceError, LedgerKind};
use crate::clock::{from_millis, to_millis};
use crate::coupon::{Coupon, CouponError, CouponStatus, UserCoupon, UserCouponStatus};
use crate::ids::{CouponId, OrderId, ProductId, UserCouponId, UserId, VariantId};
use crate::money::{self, DiscountType, Won};
use crate::order::{
    Line, Order, OrderError, OrderItem, OrderRules, OrderStatus, PaymentStatus, PlaceOrder,
};
use crate::outbox::EventType;
use crate::product::{
    MAX_STOCK, OptionValues, Product, ProductError, ProductRow, ProductStatus, Variant,
};

/// One write a client asked for.
#[derive(Debug, Clone)]
pub enum Work {
    /// Place an order (and pay it with `pay`).
    Place(PlaceOrder),
    /// Order the user's cart (and pay it with `pay`), emptying the cart.
    Checkout {
        user: UserId,
        user_coupon: Option<UserCouponId>,
        pay: bool,
    },
    /// Pay a PENDING order of `caller`'s.
    Pay { order: OrderId, caller: UserId },
    /// Cancel an order of `caller`'s.
    Cancel { order: OrderId, caller: UserId },
    /// Ship a PAID order (admin).
    Ship {
        order: OrderId,
        tracking: Option<String>,
    },
    /// Mark a SHIPPED order delivered (admin).
    Deliver { order: OrderId },
    /// Add to a balance.
    Charge { user: UserId, amount: Won },
    /// Issue a coupon to a user, first come first served.
    Issue { coupon: CouponId, user: UserId },
    /// Add (or remove) stock (admin).
    AdjustStock { target: StockTarget, delta: i64 },
    /// Expire up to `limit` PENDING orders whose time is up (the expiry worker).
    ExpireDue { limit: i64 },
}

/// Whose stock an adjustment moves: a variant's, or the one variant's of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockTarget {
    Variant(VariantId),
    Product(ProductId),
}

impl Work {
    /// The row this job contends for most, as a number: jobs with the same one go to
    /// the same writer.
    pub fn affinity(&self) -> u64 {
        match self {
            Work::Place(p) => p.lines.iter().map(|l| l.product.0).min().unwrap_or(0) as u64,
            Work::Checkout { user, .. } | Work::Charge { user, .. } => user.0 as u64,
            Work::Pay { order, .. }
            | Work::Cancel { order, .. }
            | Work::Ship { order, .. }
            | Work::Deliver { order } => order.0 as u64,
            Work::Issue { coupon, .. } => coupon.0 as u64,
            Work::AdjustStock {
                target: StockTarget::Product(p),
                ..
            } => p.0 as u64,
            Work::AdjustStock {
                target: StockTarget::Variant(v),
                ..
            } => v.0 as u64,
            Work::ExpireDue { .. } => 0,
        }
    }

    /// A short name, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Place(p) if p.pay => "order_and_pay",
            Work::Place(_) => "order",
            Work::Checkout { .. } => "checkout",
            Work::Pay { .. } => "pay",
            Work::Cancel { .. } => "cancel",
            Work::Ship { .. } => "ship",
            Work::Deliver { .. } => "deliver",
            Work::Charge { .. } => "charge",
            Work::Issue { .. } => "coupon_issue",
            Work::AdjustStock { .. } => "stock",
            Work::ExpireDue { .. } => "expire",
        }
    }
}

/// What a job did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Done {
    Order(Order),
    Balance(Balance),
    Issued(UserCoupon),
    Product(Product),
    /// The orders the expiry pass expired.
    Expired(Vec<Order>),
}

/// Why a job was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Balance(#[from] BalanceError),
    #[error(transparent)]
    Coupon(#[from] CouponError),
    #[error(transparent)]
    Product(#[from] ProductError),
}

impl Refused {
    /// A refusal that tells the caller nothing it may not know: an order that is
    /// missing or someone else's. Like a 403, it is never stored under the caller's
    /// idempotency key (so it writes nothing at all).
    pub fn leaves_no_trace(&self) -> bool {
        matches!(self, Refused::Order(OrderError::NotFound(_)))
    }
}

pub type Decision = Result<Done, Refused>;

/// Limits from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub order: OrderRules,
    pub max_balance: Won,
    /// Most won one user may charge in one calendar day of `timezone`.
    pub max_daily_charge: Won,
    pub timezone: chrono_tz::Tz,
}

impl Rules {
    /// The calendar day of `now` in the rules' time zone, as days since 1970-01-01.
    pub fn day(&self, now: DateTime<Utc>) -> i64 {
        let local = now.with_timezone(&self.timezone).date_naive();
        (local - chrono::NaiveDate::default()).num_days()
    }
}

// ---- the rows a batch reads ----

#[derive(Debug, Clone)]
pub struct UserRow {
    pub balance: Won,
    /// The day of the charges counted in `charged_today` (days since 1970-01-01 in the
    /// rules' time zone).
    pub charge_day: Option<i64>,
    pub charged_today: Won,
}

#[derive(Debug, Clone)]
pub struct VariantRow {
    pub product: ProductId,
    pub sku: Option<String>,
    pub options: OptionValues,
    pub price: Won,
    pub stock: i64,
}

/// An issued coupon with what its definition says about using it.
#[derive(Debug, Clone)]
pub struct UserCouponRow {
    pub coupon: CouponId,
    pub user: UserId,
    pub issued_at: i64,
    pub expires_at: i64,
    pub order: Option<OrderId>,
    pub used_at: Option<i64>,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub min_order_amount: Won,
    /// The product the coupon is limited to.
    pub product: Option<ProductId>,
}

#[derive(Debug, Clone)]
pub struct OrderRow {
    pub order: Order,
    pub cancelled_at: Option<i64>,
}

/// Where new ids come from: the next free one (SQLite, whose writer is alone), or
/// ids reserved from the database's sequence (PostgreSQL), one per job that may
/// create a row, used by that job whether it succeeds or not: so a batch gives its
/// rows the ids they would get with its jobs run one at a time.
#[derive(Debug, Clone)]
pub enum Ids {
    Next(i64),
    Reserved(VecDeque<i64>),
}

impl Ids {
    /// At the start of a job that may create a row.
    fn attempt(&mut self) -> Option<i64> {
        match self {
            Ids::Next(_) => None,
            Ids::Reserved(ids) => Some(ids.pop_front().expect("an id was reserved per job")),
        }
    }

    /// The new row's id, once the job succeeds.
    fn take(&mut self, attempt: Option<i64>) -> i64 {
        match (self, attempt) {
            (_, Some(reserved)) => reserved,
            (Ids::Next(next), None) => {
                *next += 1;
                *next - 1
            }
            (Ids::Reserved(_), None) => unreachable!("reserved ids are taken per attempt"),
        }
    }
}

/// The rows a batch touches, as read at its start and changed by its jobs.
#[derive(Debug, Clone)]
pub struct State {
    pub users: HashMap<UserId, UserRow>,
    pub variants: HashMap<VariantId, VariantRow>,
    pub products: HashMap<ProductId, ProductRow>,
    /// Every variant of each product read, in id order.
    pub product_variants: HashMap<ProductId, Vec<VariantId>>,
    pub coupons: HashMap<CouponId, Coupon>,
    /// (coupon, user) pairs already issued, among those the batch asks about.
    pub issued: HashSet<(CouponId, UserId)>,
    pub user_coupons: HashMap<UserCouponId, UserCouponRow>,
    pub orders: HashMap<OrderId, OrderRow>,
    /// Cart lines (variant, quantity) of the users checking out, in the order added.
    pub carts: HashMap<UserId, Vec<(VariantId, i64)>>,
    /// PENDING orders past their time, oldest first (for [`Work::ExpireDue`]).
    pub due: Vec<OrderId>,
    pub order_ids: Ids,
    pub user_coupon_ids: Ids,
    pub changes: Changes,
    /// Products whose stock or content the job being decided changed (so the caches of
    /// those products can be dropped once it commits).
    pub touched: Vec<ProductId>,
}

impl State {
    pub fn new(order_ids: Ids, user_coupon_ids: Ids) -> State {
        State {
            users: HashMap::new(),
            variants: HashMap::new(),
            products: HashMap::new(),
            product_variants: HashMap::new(),
            coupons: HashMap::new(),
            issued: HashSet::new(),
            user_coupons: HashMap::new(),
            orders: HashMap::new(),
            carts: HashMap::new(),
            due: Vec::new(),
            order_ids,
            user_coupon_ids,
            changes: Changes::default(),
            touched: Vec::new(),
        }
    }

    /// A job answered without being decided (a replayed or reused key) still uses the
    /// id reserved for it, as it would alone.
    pub fn skip(&mut self, work: &Work) {
        match work {
            Work::Place(_) | Work::Checkout { .. } => {
                self.order_ids.attempt();
            }
            Work::Issue { .. } => {
                self.user_coupon_ids.attempt();
            }
            _ => {}
        }
    }

    /// The product `id` as it is now, with all its variants.
    fn product(&self, id: ProductId) -> Product {
        let row = self.products[&id].clone();
        let variants = self.product_variants[&id]
            .iter()
            .map(|v| {
                let r = &self.variants[v];
                Variant {
                    id: *v,
                    sku: r.sku.clone(),
                    options: r.options.clone(),
                    price: r.price,
                    stock: r.stock,
                    sold_out: r.stock == 0,
                }
            })
            .collect();
        Product::assemble(row, variants)
    }
}

/// A balance ledger entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub user: UserId,
    pub kind: LedgerKind,
    pub amount: Won,
    pub balance_after: Won,
    pub order: Option<OrderId>,
}

/// A payment attempt to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub order: OrderId,
    pub status: PaymentStatus,
    pub amount: Won,
    pub failure_code: Option<&'static str>,
}

pub use crate::coupon::CouponAction;

/// Everything the decided jobs change, for one bulk write.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Orders to insert (their final state is in [`State::orders`]).
    pub new_orders: BTreeSet<OrderId>,
    /// Existing orders whose status moved.
    pub orders: BTreeSet<OrderId>,
    /// Stock moved per variant.
    pub stock: BTreeMap<VariantId, i64>,
    /// Admin stock adjustments, in order (they also stamp `updated_at`).
    pub adjustments: Vec<(VariantId, ProductId, i64)>,
    /// Balance moved per user.
    pub balances: BTreeMap<UserId, i64>,
    /// Users whose day's charges moved.
    pub daily: BTreeSet<UserId>,
    /// Coupons issued per definition.
    pub issued: BTreeMap<CouponId, i64>,
    /// User coupons to insert.
    pub new_user_coupons: BTreeSet<UserCouponId>,
    /// Existing user coupons taken or given back.
    pub user_coupons: BTreeSet<UserCouponId>,
    pub ledger: Vec<LedgerEntry>,
    pub payments: Vec<PaymentRecord>,
    /// What happened to issued coupons: (coupon, action, order).
    pub history: Vec<(UserCouponId, CouponAction, Option<OrderId>)>,
    /// Data-platform events: the order as it is when the event happens.
    pub events: Vec<(EventType, Order)>,
    /// Units and won sold per (hour of payment, product); negative for refunds.
    pub sales: BTreeMap<(i64, ProductId), (i64, i64)>,
    /// Cart lines ordered by a checkout (and so removed from the cart).
    pub carts_ordered: BTreeSet<(UserId, VariantId)>,
}

impl Changes {
    /// Whether anything is to be written.
    pub fn is_empty(&self) -> bool {
        self.new_orders.is_empty()
            && self.orders.is_empty()
            && self.stock.is_empty()
            && self.adjustments.is_empty()
            && self.balances.is_empty()
            && self.daily.is_empty()
            && self.issued.is_empty()
            && self.new_user_coupons.is_empty()
            && self.user_coupons.is_empty()
            && self.ledger.is_empty()
            && self.payments.is_empty()
            && self.history.is_empty()
            && self.events.is_empty()
            && self.carts_ordered.is_empty()
    }
}

/// Milliseconds in an hour: the sales rollup's bucket.
pub const HOUR_MS: i64 = 3_600_000;

// ---- the rules ----

/// Decides `work` against `state` at `now`, applying its changes when it succeeds.
pub fn decide(state: &mut State, work: &Work, rules: &Rules, now: DateTime<Utc>) -> Decision {
    let now_ms = to_millis(now);
    match work {
        Work::Place(req) => place(state, req, rules, now_ms)
            .map(Done::Order)
            .map_err(Refused::from),
        Work::Checkout {
            user,
            user_coupon,
            pay,
        } => checkout(state, *user, *user_coupon, *pay, rules, now_ms)
            .map(Done::Order)
            .map_err(Refused::from),
        Work::Pay { order, caller } => pay(state, *order, *caller, now_ms)
            .map(Done::Order)
            .map_err(Refused::from),
        Work::Cancel { order, caller } => cancel(state, *order, *caller, now_ms)
            .map(Done::Order)
            .map_err(Refused::from),
        Work::Ship { order, tracking } => ship(state, *order, tracking.clone(), now_ms)
            .map(Done::Order)
            .map_err(Refused::from),
        Work::Deliver { order } => deliver(state, *order, now_ms)
            .map(Done::Order)
            .map_err(Refused::from),
        Work::Charge { user, amount } => charge(state, *user, *amount, rules, now)
            .map(Done::Balance)
            .map_err(Refused::from),
        Work::Issue { coupon, user } => issue(state, *coupon, *user, now)
            .map(Done::Issued)
            .map_err(Refused::from),
        Work::AdjustStock { target, delta } => adjust_stock(state, *target, *delta, now_ms)
            .map(Done::Product)
            .map_err(Refused::from),
        Work::ExpireDue { limit } => {
            let due: Vec<OrderId> = state.due.drain(..).collect();
            let mut expired = Vec::new();
            for id in due.into_iter().take(*limit as usize) {
                if let Some(order) = expire(state, id, now_ms) {
                    expired.push(order);
                }
            }
            Ok(Done::Expired(expired))
        }
    }
}

fn overflow() -> OrderError {
    OrderError::Invalid("the order total is too large".into())
}

fn place(
    state: &mut State,
    req: &PlaceOrder,
    rules: &Rules,
    now_ms: i64,
) -> Result<Order, OrderError> {
    let reserved = state.order_ids.attempt();
    crate::order::validate_lines(&req.lines, rules.order)?;
    if !state.users.contains_key(&req.user) {
        return Err(OrderError::UserNotFound(req.user));
    }
    order_lines(
        state,
        req.user,
        &req.lines,
        req.user_coupon,
        req.pay,
        rules,
        now_ms,
        reserved,
    )
}

fn checkout(
    state: &mut State,
    user: UserId,
    user_coupon: Option<UserCouponId>,
    pay: bool,
    rules: &Rules,
    now_ms: i64,
) -> Result<Order, OrderError> {
    let reserved = state.order_ids.attempt();
    if !state.users.contains_key(&user) {
        return Err(OrderError::UserNotFound(user));
    }
    let lines: Vec<Line> = state
        .carts
        .get(&user)
        .map(|lines| {
            lines
                .iter()
                .map(|&(variant, quantity)| Line {
                    product: state.variants[&variant].product,
                    variant: Some(variant),
                    quantity,
                })
                .collect()
        })
        .unwrap_or_default();
    if lines.is_empty() {
        return Err(OrderError::CartEmpty);
    }
    crate::order::validate_lines(&lines, rules.order)?;
    let order = order_lines(
        state,
        user,
        &lines,
        user_coupon,
        pay,
        rules,
        now_ms,
        reserved,
    )?;
    for (variant, _) in state.carts.remove(&user).unwrap_or_default() {
        state.changes.carts_ordered.insert((user, variant));
    }
    Ok(order)
}

/// Places an order of `lines` for `user`: holds all its stock and its coupon, or
/// nothing; with `pay`, pays it at once.
#[expect(clippy::too_many_arguments, reason = "one call site each, all named")]
fn order_lines(
    state: &mut State,
    user: UserId,
    lines: &[Line],
    user_coupon: Option<UserCouponId>,
    pay: bool,
    rules: &Rules,
    now_ms: i64,
    reserved: Option<i64>,
) -> Result<Order, OrderError> {
    // Each product, in id order: known, on sale, and each line's variant one of its.
    let mut resolved = Vec::with_capacity(lines.len());
    let products: BTreeSet<ProductId> = lines.iter().map(|l| l.product).collect();
    let mut variant_of = HashMap::new();
    for product in products {
        let Some(row) = state.products.get(&product) else {
            return Err(OrderError::ProductNotFound(product));
        };
        if row.status != ProductStatus::Active {
            return Err(OrderError::ProductNotAvailable(product));
        }
        let variants = &state.product_variants[&product];
        for (i, line) in lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.product == product)
        {
            let variant = match line.variant {
                Some(v) if variants.contains(&v) => v,
                Some(v) => return Err(OrderError::VariantNotFound(v)),
                None if variants.len() == 1 => variants[0],
                None => return Err(OrderError::VariantRequired(product)),
            };
            variant_of.insert(i, variant);
        }
    }
    for (i, line) in lines.iter().enumerate() {
        resolved.push((line.product, variant_of[&i], line.quantity));
    }
    let demand = crate::order::summed(resolved.iter().map(|&(_, v, q)| (v, q)));
    for (&variant, &quantity) in &demand {
        let v = &state.variants[&variant];
        if v.stock < quantity {
            return Err(OrderError::InsufficientStock(v.product, variant));
        }
    }
    let items = resolved
        .iter()
        .map(|&(product, variant, quantity)| {
            let v = &state.variants[&variant];
            Ok(OrderItem {
                product_id: product,
                variant_id: variant,
                name: state.products[&product].name.clone(),
                options: v.options.clone(),
                unit_price: v.price,
                quantity,
                amount: v.price.checked_mul(quantity).ok_or_else(overflow)?,
            })
        })
        .collect::<Result<Vec<_>, OrderError>>()?;
    let total = money::order_total(items.iter().map(|i| (i.unit_price, i.quantity)))
        .ok_or_else(overflow)?;
    let discount = match user_coupon {
        None => Won::ZERO,
        Some(id) => {
            let c = state
                .user_coupons
                .get(&id)
                .filter(|c| c.user == user)
                .ok_or(OrderError::CouponNotUsable("not one of the user's coupons"))?;
            match coupon_status(c, now_ms) {
                UserCouponStatus::Available => {}
                UserCouponStatus::Used => return Err(OrderError::CouponNotUsable("already used")),
                UserCouponStatus::Expired => return Err(OrderError::CouponNotUsable("expired")),
            }
            if total < c.min_order_amount {
                return Err(OrderError::CouponNotUsable(
                    "the order is under the minimum amount",
                ));
            }
            // A coupon of one product discounts that product's lines only.
            let base = match c.product {
                None => total,
                Some(p) if items.iter().any(|i| i.product_id == p) => Won(items
                    .iter()
                    .filter(|i| i.product_id == p)
                    .map(|i| i.amount.0)
                    .sum()),
                Some(_) => {
                    return Err(OrderError::CouponNotUsable(
                        "the order has no line of the coupon's product",
                    ));
                }
            };
            money::discount(c.discount_type, c.discount_value, base)
        }
    };
    let final_amount = Won(total.0 - discount.0);
    if pay && state.users[&user].balance < final_amount {
        return Err(OrderError::InsufficientBalance);
    }

    // Every check passed: apply.
    let id = OrderId(state.order_ids.take(reserved));
    for (&variant, &quantity) in &demand {
        move_stock(state, variant, -quantity);
    }
    if let Some(c) = user_coupon {
        let uc = state.user_coupons.get_mut(&c).expect("checked");
        uc.order = Some(id);
        uc.used_at = Some(now_ms);
        state.changes.user_coupons.insert(c);
        state
            .changes
            .history
            .push((c, CouponAction::Used, Some(id)));
    }
    let order = Order {
        id,
        user_id: user,
        status: OrderStatus::Pending,
        items,
        user_coupon_id: user_coupon,
        total_amount: total,
        discount_amount: discount,
        final_amount,
        created_at: from_millis(now_ms),
        paid_at: None,
        expires_at: from_millis(now_ms + rules.order.ttl.num_milliseconds()),
        shipped_at: None,
        delivered_at: None,
        tracking_number: None,
    };
    state.orders.insert(
        id,
        OrderRow {
            order,
            cancelled_at: None,
        },
    );
    state.changes.new_orders.insert(id);
    if pay {
        settle_payment(state, id, now_ms);
    }
    Ok(state.orders[&id].order.clone())
}

/// The coupon's status now, as a read would show it.
fn coupon_status(c: &UserCouponRow, now_ms: i64) -> UserCouponStatus {
    UserCouponStatus::of(c.order, from_millis(c.expires_at), from_millis(now_ms))
}

/// The order `id` of `caller`'s: 404 for a missing one and for someone else's alike.
fn own_order(state: &State, id: OrderId, caller: UserId) -> Result<&OrderRow, OrderError> {
    state
        .orders
        .get(&id)
        .filter(|o| o.order.user_id == caller)
        .ok_or(OrderError::NotFound(id))
}

fn pay(state: &mut State, id: OrderId, caller: UserId, now_ms: i64) -> Result<Order, OrderError> {
    let row = own_order(state, id, caller)?;
    let order = &row.order;
    match order.status {
        OrderStatus::Pending if to_millis(order.expires_at) <= now_ms => {
            expire(state, id, now_ms);
            return Err(OrderError::NotPayable(OrderStatus::Expired));
        }
        OrderStatus::Pending => {}
        other => return Err(OrderError::NotPayable(other)),
    }
    if state.users[&order.user_id].balance < order.final_amount {
        // A refused payment is recorded as a failed attempt.
        let amount = order.final_amount;
        state.changes.payments.push(PaymentRecord {
            order: id,
            status: PaymentStatus::Failed,
            amount,
            failure_code: Some(crate::error::ErrorCode::InsufficientBalance.as_str()),
        });
        return Err(OrderError::InsufficientBalance);
    }
    settle_payment(state, id, now_ms);
    Ok(state.orders[&id].order.clone())
}

/// Marks a PENDING order PAID and does what paying does besides: the debit with its
/// ledger entry, the payment record, the sales rollup and the `order.paid` event. The
/// caller checked the balance.
fn settle_payment(state: &mut State, id: OrderId, now_ms: i64) {
    let row = state.orders.get_mut(&id).expect("the order was read");
    row.order.status = OrderStatus::Paid;
    row.order.paid_at = Some(from_millis(now_ms));
    let order = row.order.clone();
    touch_order(state, id);
    move_balance(
        state,
        order.user_id,
        -order.final_amount.0,
        LedgerKind::Payment,
        Some(id),
    );
    state.changes.payments.push(PaymentRecord {
        order: id,
        status: PaymentStatus::Succeeded,
        amount: order.final_amount,
        failure_code: None,
    });
    for (product, (quantity, amount)) in order.sales() {
        record_sale(state, now_ms, product, quantity, amount);
    }
    state.changes.events.push((EventType::OrderPaid, order));
}

fn cancel(
    state: &mut State,
    id: OrderId,
    caller: UserId,
    now_ms: i64,
) -> Result<Order, OrderError> {
    let row = own_order(state, id, caller)?;
    let was_paid = match row.order.status {
        OrderStatus::Pending if to_millis(row.order.expires_at) <= now_ms => {
            expire(state, id, now_ms);
            return Err(OrderError::NotCancellable(OrderStatus::Expired));
        }
        OrderStatus::Pending => false,
        OrderStatus::Paid => true,
        other => return Err(OrderError::NotCancellable(other)),
    };
    let row = state.orders.get_mut(&id).expect("checked");
    row.order.status = OrderStatus::Cancelled;
    row.cancelled_at = Some(now_ms);
    let order = row.order.clone();
    touch_order(state, id);
    release(state, &order, now_ms);
    if was_paid {
        // In full, even past SHOP_MAX_BALANCE: the limit refuses charges, never money
        // owed back.
        move_balance(
            state,
            order.user_id,
            order.final_amount.0,
            LedgerKind::Refund,
            Some(id),
        );
        let paid_at = order.paid_at.map_or(now_ms, to_millis);
        for (product, (quantity, amount)) in order.sales() {
            record_sale(state, paid_at, product, -quantity, -amount);
        }
    }
    state
        .changes
        .events
        .push((EventType::OrderCancelled, order.clone()));
    Ok(order)
}

/// PAID -> SHIPPED, with its event.
fn ship(
    state: &mut State,
    id: OrderId,
    tracking: Option<String>,
    now_ms: i64,
) -> Result<Order, OrderError> {
    let row = state.orders.get_mut(&id).ok_or(OrderError::NotFound(id))?;
    if row.order.status != OrderStatus::Paid {
        return Err(OrderError::StatusConflict(row.order.status));
    }
    row.order.status = OrderStatus::Shipped;
    row.order.shipped_at = Some(from_millis(now_ms));
    row.order.tracking_number = tracking;
    let order = row.order.clone();
    touch_order(state, id);
    state
        .changes
        .events
        .push((EventType::OrderShipped, order.clone()));
    Ok(order)
}

/// SHIPPED -> DELIVERED, with its event.
fn deliver(state: &mut State, id: OrderId, now_ms: i64) -> Result<Order, OrderError> {
    let row = state.orders.get_mut(&id).ok_or(OrderError::NotFound(id))?;
    if row.order.status != OrderStatus::Shipped {
        return Err(OrderError::StatusConflict(row.order.status));
    }
    row.order.status = OrderStatus::Delivered;
    row.order.delivered_at = Some(from_millis(now_ms));
    let order = row.order.clone();
    touch_order(state, id);
    state
        .changes
        .events
        .push((EventType::OrderDelivered, order.clone()));
    Ok(order)
}

/// Expires `id` if it is still PENDING and due; returns it when it did.
fn expire(state: &mut State, id: OrderId, now_ms: i64) -> Option<Order> {
    let row = state.orders.get_mut(&id)?;
    if row.order.status != OrderStatus::Pending || to_millis(row.order.expires_at) > now_ms {
        return None;
    }
    row.order.status = OrderStatus::Expired;
    row.cancelled_at = Some(now_ms);
    let order = row.order.clone();
    touch_order(state, id);
    release(state, &order, now_ms);
    Some(order)
}

/// Gives back the stock and coupon an order held. A coupon whose validity has passed
/// is let go without being given back: no RESTORED step, it reads EXPIRED from now.
fn release(state: &mut State, order: &Order, now_ms: i64) {
    for (variant, quantity) in order.quantities() {
        move_stock(state, variant, quantity);
    }
    if let Some(c) = order.user_coupon_id
        && let Some(uc) = state.user_coupons.get_mut(&c)
        && uc.order == Some(order.id)
    {
        uc.order = None;
        uc.used_at = None;
        let expired = uc.expires_at <= now_ms;
        state.changes.user_coupons.insert(c);
        if !expired {
            state
                .changes
                .history
                .push((c, CouponAction::Restored, Some(order.id)));
        }
    }
}

fn touch_order(state: &mut State, id: OrderId) {
    if !state.changes.new_orders.contains(&id) {
        state.changes.orders.insert(id);
    }
}

fn move_stock(state: &mut State, variant: VariantId, delta: i64) {
    let product = match state.variants.get_mut(&variant) {
        Some(v) => {
            v.stock += delta;
            v.product
        }
        None => unreachable!("the variants an order holds were read"),
    };
    *state.changes.stock.entry(variant).or_insert(0) += delta;
    if !state.touched.contains(&product) {
        state.touched.push(product);
    }
}

fn move_balance(
    state: &mut State,
    user: UserId,
    delta: i64,
    kind: LedgerKind,
    order: Option<OrderId>,
) -> Won {
    let row = state.users.get_mut(&user).expect("the user was read");
    row.balance = Won(row.balance.0 + delta);
    *state.changes.balances.entry(user).or_insert(0) += delta;
    state.changes.ledger.push(LedgerEntry {
        user,
        kind,
        amount: Won(delta),
        balance_after: row.balance,
        order,
    });
    row.balance
}

fn record_sale(state: &mut State, paid_at_ms: i64, product: ProductId, quantity: i64, won: i64) {
    let sale = state
        .changes
        .sales
        .entry((paid_at_ms.div_euclid(HOUR_MS), product))
        .or_insert((0, 0));
    sale.0 += quantity;
    sale.1 += won;
}

fn charge(
    state: &mut State,
    user: UserId,
    amount: Won,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<Balance, BalanceError> {
    let row = state
        .users
        .get(&user)
        .ok_or(BalanceError::UserNotFound(user))?;
    if row.balance.0 > rules.max_balance.0 - amount.0 {
        return Err(BalanceError::LimitExceeded(rules.max_balance));
    }
    let day = rules.day(now);
    let charged = if row.charge_day == Some(day) {
        row.charged_today
    } else {
        Won::ZERO
    };
    if charged.0 > rules.max_daily_charge.0 - amount.0 {
        return Err(BalanceError::DailyLimitExceeded(rules.max_daily_charge));
    }
    let balance = move_balance(state, user, amount.0, LedgerKind::Charge, None);
    let row = state.users.get_mut(&user).expect("checked");
    row.charge_day = Some(day);
    row.charged_today = Won(charged.0 + amount.0);
    state.changes.daily.insert(user);
    Ok(Balance {
        user_id: user,
        balance,
    })
}

fn issue(
    state: &mut State,
    coupon_id: CouponId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<UserCoupon, CouponError> {
    let reserved = state.user_coupon_ids.attempt();
    let coupon = state
        .coupons
        .get(&coupon_id)
        .ok_or(CouponError::NotFound(coupon_id))?;
    if !state.users.contains_key(&user) {
        return Err(CouponError::UserNotFound(user));
    }
    if coupon.status != CouponStatus::Active {
        return Err(CouponError::Inactive);
    }
    if !coupon.in_issue_period(now) {
        return Err(CouponError::NotInIssuePeriod);
    }
    if state.issued.contains(&(coupon_id, user)) {
        return Err(CouponError::AlreadyIssued);
    }
    if coupon.issued_quantity >= coupon.total_quantity {
        return Err(CouponError::SoldOut);
    }
    let now_ms = to_millis(now);
    let expires_at = to_millis(now + TimeDelta::days(coupon.valid_days));
    let row = UserCouponRow {
        coupon: coupon_id,
        user,
        issued_at: now_ms,
        expires_at,
        order: None,
        used_at: None,
        discount_type: coupon.discount_type,
        discount_value: coupon.discount_value,
        min_order_amount: coupon.min_order_amount,
        product: coupon.product_id,
    };
    state
        .coupons
        .get_mut(&coupon_id)
        .expect("checked")
        .issued_quantity += 1;
    *state.changes.issued.entry(coupon_id).or_insert(0) += 1;
    state.issued.insert((coupon_id, user));
    let id = UserCouponId(state.user_coupon_ids.take(reserved));
    state.user_coupons.insert(id, row);
    state.changes.new_user_coupons.insert(id);
    state.changes.history.push((id, CouponAction::Issued, None));
    Ok(UserCoupon {
        id,
        coupon_id,
        user_id: user,
        status: UserCouponStatus::Available,
        issued_at: from_millis(now_ms),
        expires_at: from_millis(expires_at),
        used_at: None,
        order_id: None,
    })
}

fn adjust_stock(
    state: &mut State,
    target: StockTarget,
    delta: i64,
    now_ms: i64,
) -> Result<Product, ProductError> {
    let variant = match target {
        StockTarget::Variant(v) => {
            if !state.variants.contains_key(&v) {
                return Err(ProductError::VariantNotFound(v));
            }
            v
        }
        StockTarget::Product(p) => {
            let variants = state
                .product_variants
                .get(&p)
                .ok_or(ProductError::NotFound(p))?;
            match variants.as_slice() {
                [only] => *only,
                _ => return Err(ProductError::SeveralVariants(p)),
            }
        }
    };
    let v = &state.variants[&variant];
    let after = v.stock + delta;
    if after < 0 {
        return Err(ProductError::StockBelowZero);
    }
    if after > MAX_STOCK {
        return Err(ProductError::StockTooHigh);
    }
    let product = v.product;
    move_stock(state, variant, delta);
    state.changes.adjustments.push((variant, product, delta));
    state
        .products
        .get_mut(&product)
        .expect("a variant's product was read")
        .updated_at = from_millis(now_ms);
    Ok(state.product(product))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            order: OrderRules {
                max_items: 50,
                max_quantity: 1000,
                ttl: TimeDelta::minutes(5),
            },
            max_balance: Won(100_000),
            max_daily_charge: Won(95_000),
            timezone: chrono_tz::Asia::Seoul,
        }
    }

    fn user(balance: i64) -> UserRow {
        UserRow {
            balance: Won(balance),
            charge_day: None,
            charged_today: Won::ZERO,
        }
    }

    /// Users 1 (10,000 won) and 2 (none); product 1 (pen, one variant 1 of 2 units)
    /// and product 2 (shirt, variants 2 and 3, size S and M, 1 unit each).
    fn world() -> State {
        let mut s = State::new(Ids::Next(1), Ids::Next(1));
        s.users.insert(UserId(1), user(10_000));
        s.users.insert(UserId(2), user(0));
        for (id, name) in [(1, "pen"), (2, "shirt")] {
            s.products.insert(
                ProductId(id),
                ProductRow {
                    id: ProductId(id),
                    name: name.into(),
                    description: String::new(),
                    status: ProductStatus::Active,
                    options: Vec::new(),
                    images: Vec::new(),
                    created_at: from_millis(0),
                    updated_at: from_millis(0),
                },
            );
        }
        for (id, product, size, stock) in
            [(1, 1, None, 2), (2, 2, Some("S"), 1), (3, 2, Some("M"), 1)]
        {
            s.variants.insert(
                VariantId(id),
                VariantRow {
                    product: ProductId(product),
                    sku: None,
                    options: size
                        .map(|v: &str| [("size".to_string(), v.to_string())].into())
                        .unwrap_or_default(),
                    price: Won(3_000),
                    stock,
                },
            );
            s.product_variants
                .entry(ProductId(product))
                .or_default()
                .push(VariantId(id));
        }
        s
    }

    fn order(user: i64, product: i64, variant: Option<i64>, quantity: i64, pay: bool) -> Work {
        Work::Place(PlaceOrder {
            user: UserId(user),
            lines: vec![Line {
                product: ProductId(product),
                variant: variant.map(VariantId),
                quantity,
            }],
            user_coupon: None,
            pay,
        })
    }

    #[test]
    fn a_job_sees_the_jobs_before_it_and_a_refusal_changes_nothing() {
        let (mut s, r, now) = (world(), rules(), Utc::now());
        assert!(decide(&mut s, &order(1, 1, None, 2, true), &r, now).is_ok());
        let refused = decide(&mut s, &order(1, 1, None, 1, true), &r, now);
        assert!(matches!(
            refused,
            Err(Refused::Order(OrderError::InsufficientStock(..)))
        ));
        assert_eq!(s.variants[&VariantId(1)].stock, 0);
        assert_eq!(s.users[&UserId(1)].balance, Won(4_000));
        assert_eq!(s.changes.stock[&VariantId(1)], -2);
        assert_eq!(s.changes.ledger.len(), 1);
        assert_eq!(s.changes.events.len(), 1);
        assert_eq!(s.changes.payments.len(), 1);
        assert_eq!(s.changes.new_orders.len(), 1);
    }

    #[test]
    fn variants_are_named_unless_the_product_has_one() {
        let (mut s, r, now) = (world(), rules(), Utc::now());
        assert!(matches!(
            decide(&mut s, &order(1, 2, None, 1, false), &r, now),
            Err(Refused::Order(OrderError::VariantRequired(_)))
        ));
        assert!(matches!(
            decide(&mut s, &order(1, 2, Some(1), 1, false), &r, now),
            Err(Refused::Order(OrderError::VariantNotFound(_)))
        ));
        let Ok(Done::Order(o)) = decide(&mut s, &order(1, 2, Some(3), 1, false), &r, now) else {
            panic!()
        };
        assert_eq!(o.items[0].variant_id, VariantId(3));
        assert_eq!(o.items[0].options["size"], "M");
        // The other variant of the product still sells.
        assert!(decide(&mut s, &order(1, 2, Some(2), 1, false), &r, now).is_ok());
        assert!(matches!(
            decide(&mut s, &order(1, 2, Some(3), 1, false), &r, now),
            Err(Refused::Order(OrderError::InsufficientStock(..)))
        ));
        s.products.get_mut(&ProductId(1)).unwrap().status = ProductStatus::Inactive;
        assert!(matches!(
            decide(&mut s, &order(1, 1, None, 1, false), &r, now),
            Err(Refused::Order(OrderError::ProductNotAvailable(_)))
        ));
    }

    #[test]
    fn paying_without_the_money_leaves_nothing_held() {
        let (mut s, r, now) = (world(), rules(), Utc::now());
        let refused = decide(&mut s, &order(2, 1, None, 1, true), &r, now);
        assert!(matches!(
            refused,
            Err(Refused::Order(OrderError::InsufficientBalance))
        ));
        assert!(s.changes.is_empty());
        assert_eq!(s.variants[&VariantId(1)].stock, 2);
        // A refused order takes no id: the next order gets the first.
        let Ok(Done::Order(o)) = decide(&mut s, &order(2, 1, None, 1, false), &r, now) else {
            panic!()
        };
        assert_eq!(o.id, OrderId(1));
        // Paying it later without the money is a failed attempt on record.
        let pay = Work::Pay {
            order: o.id,
            caller: UserId(2),
        };
        assert!(decide(&mut s, &pay, &r, now).is_err());
        assert_eq!(s.changes.payments.len(), 1);
        assert_eq!(s.changes.payments[0].status, PaymentStatus::Failed);
    }

    #[test]
    fn someone_elses_order_is_not_found_and_a_due_one_expires_on_payment() {
        let (mut s, r, now) = (world(), rules(), Utc::now());
        let Ok(Done::Order(o)) = decide(&mut s, &order(1, 1, None, 1, false), &r, now) else {
            panic!()
        };
        let stranger = Work::Pay {
            order: o.id,
            caller: UserId(2),
        };
        assert!(matches!(
            decide(&mut s, &stranger, &r, now),
            Err(Refused::Order(OrderError::NotFound(_)))
        ));
        let late = now + TimeDelta::minutes(5);
        let pay = Work::Pay {
            order: o.id,
            caller: UserId(1),
        };
        assert!(matches!(
            decide(&mut s, &pay, &r, late),
            Err(Refused::Order(OrderError::NotPayable(OrderStatus::Expired)))
        ));
        assert_eq!(s.orders[&o.id].order.status, OrderStatus::Expired);
        assert_eq!(s.variants[&VariantId(1)].stock, 2);
        assert_eq!(s.changes.stock[&VariantId(1)], 0);
    }

    #[test]
    fn an_order_ships_then_is_delivered_and_then_cannot_be_cancelled() {
        let (mut s, r, now) = (world(), rules(), Utc::now());
        let Ok(Done::Order(o)) = decide(&mut s, &order(1, 1, None, 1, true), &r, now) else {
            panic!()
        };
        let deliver = Work::Deliver { order: o.id };
        assert!(matches!(
            decide(&mut s, &deliver, &r, now),
            Err(Refused::Order(OrderError::StatusConflict(
                OrderStatus::Paid
            )))
        ));
        let ship = Work::Ship {
            order: o.id,
            tracking: Some("CJ-1".into()),
        };
        assert!(decide(&mut s, &ship, &r, now).is_ok());
        assert!(decide(&mut s, &deliver, &r, now).is_ok());
        let cancel = Work::Cancel {
            order: o.id,
            caller: UserId(1),
        };
        assert!(matches!(
            decide(&mut s, &cancel, &r, now),
            Err(Refused::Order(OrderError::NotCancellable(
                OrderStatus::Delivered
            )))
        ));
        let kinds: Vec<_> = s.changes.events.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                EventType::OrderPaid,
                EventType::OrderShipped,
                EventType::OrderDelivered
            ]
        );
    }

    #[test]
    fn charges_stop_at_the_balance_limit_and_at_the_days_limit() {
        let (mut s, r) = (world(), rules());
        let charge = |user, amount| Work::Charge {
            user: UserId(user),
            amount: Won(amount),
        };
        let now = Utc::now();
        assert!(decide(&mut s, &charge(1, 90_000), &r, now).is_ok());
        assert!(matches!(
            decide(&mut s, &charge(1, 1), &r, now),
            Err(Refused::Balance(BalanceError::LimitExceeded(_)))
        ));
        assert_eq!(s.users[&UserId(1)].balance, Won(100_000));
        assert!(decide(&mut s, &charge(2, 95_000), &r, now).is_ok());
        s.users.get_mut(&UserId(2)).unwrap().balance = Won(0);
        assert!(matches!(
            decide(&mut s, &charge(2, 1), &r, now),
            Err(Refused::Balance(BalanceError::DailyLimitExceeded(_)))
        ));
        // The next day in Seoul, the count starts again.
        let tomorrow = now + TimeDelta::days(1);
        assert!(decide(&mut s, &charge(2, 1), &r, tomorrow).is_ok());
    }
}

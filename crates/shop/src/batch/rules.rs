//! The rules of every batched write, decided in memory. The writer reads the rows a
//! batch touches into a [`State`], then [`decide`] applies the jobs one after another:
//! job k sees what jobs before it did, and a refused job changes nothing (every check
//! runs before the first change). No I/O happens here, so the rules are unit- and
//! property-testable; the changes accumulate in [`Changes`] for one bulk write.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use crate::balance::{Balance, BalanceError, LedgerKind};
use crate::clock::{from_millis, to_millis};
use crate::coupon::{Coupon, CouponError, UserCoupon, UserCouponStatus};
use crate::ids::{CouponId, OrderId, ProductId, UserCouponId, UserId};
use crate::money::{self, DiscountType, Won};
use crate::order::{Order, OrderError, OrderItem, OrderRules, OrderStatus, PlaceOrder};
use crate::outbox::EventType;
use crate::product::{MAX_STOCK, Product, ProductError};

/// One write a client asked for.
#[derive(Debug, Clone)]
pub enum Work {
    /// Place an order (and pay it with `pay`).
    Place(PlaceOrder),
    /// Pay a PENDING order of `caller`'s.
    Pay { order: OrderId, caller: UserId },
    /// Cancel an order of `caller`'s.
    Cancel { order: OrderId, caller: UserId },
    /// Add to a balance.
    Charge { user: UserId, amount: Won },
    /// Issue a coupon to a user, first come first served.
    Issue { coupon: CouponId, user: UserId },
    /// Add (or remove) stock (admin).
    AdjustStock { product: ProductId, delta: i64 },
    /// Expire up to `limit` PENDING orders whose time is up (the expiry worker).
    ExpireDue { limit: i64 },
}

impl Work {
    /// The row this job contends for most, as a number: jobs with the same one go to
    /// the same writer.
    pub fn affinity(&self) -> u64 {
        match self {
            Work::Place(p) => p.lines.iter().map(|l| l.product.0).min().unwrap_or(0) as u64,
            Work::Pay { order, .. } | Work::Cancel { order, .. } => order.0 as u64,
            Work::Charge { user, .. } => user.0 as u64,
            Work::Issue { coupon, .. } => coupon.0 as u64,
            Work::AdjustStock { product, .. } => product.0 as u64,
            Work::ExpireDue { .. } => 0,
        }
    }

    /// A short name, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Place(p) if p.pay => "order_and_pay",
            Work::Place(_) => "order",
            Work::Pay { .. } => "pay",
            Work::Cancel { .. } => "cancel",
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

/// Why a job was refused. Nothing of it was applied (except that a payment or cancel
/// that finds its order past its time expires it, as the contract says).
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
}

// ---- the rows a batch reads ----

#[derive(Debug, Clone)]
pub struct UserRow {
    pub balance: Won,
}

#[derive(Debug, Clone)]
pub struct ProductRow {
    pub name: String,
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
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub min_order_amount: Won,
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
    pub products: HashMap<ProductId, ProductRow>,
    pub coupons: HashMap<CouponId, Coupon>,
    /// (coupon, user) pairs already issued, among those the batch asks about.
    pub issued: HashSet<(CouponId, UserId)>,
    pub user_coupons: HashMap<UserCouponId, UserCouponRow>,
    pub orders: HashMap<OrderId, OrderRow>,
    /// PENDING orders past their time, oldest first (for [`Work::ExpireDue`]).
    pub due: Vec<OrderId>,
    pub order_ids: Ids,
    pub user_coupon_ids: Ids,
    pub changes: Changes,
    /// Products whose stock the job being decided moved (so the caches of those
    /// products can be dropped once it commits).
    pub touched: Vec<ProductId>,
}

impl State {
    /// A job answered without being decided (a replayed or reused key) still uses the
    /// id reserved for it, as it would alone.
    pub fn skip(&mut self, work: &Work) {
        match work {
            Work::Place(_) => {
                self.order_ids.attempt();
            }
            Work::Issue { .. } => {
                self.user_coupon_ids.attempt();
            }
            _ => {}
        }
    }

    pub fn new(order_ids: Ids, user_coupon_ids: Ids) -> State {
        State {
            users: HashMap::new(),
            products: HashMap::new(),
            coupons: HashMap::new(),
            issued: HashSet::new(),
            user_coupons: HashMap::new(),
            orders: HashMap::new(),
            due: Vec::new(),
            order_ids,
            user_coupon_ids,
            changes: Changes::default(),
            touched: Vec::new(),
        }
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

/// Everything the decided jobs change, for one bulk write.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Orders to insert (their final state is in [`State::orders`]).
    pub new_orders: BTreeSet<OrderId>,
    /// Existing orders whose status moved.
    pub orders: BTreeSet<OrderId>,
    /// Stock moved per product.
    pub stock: BTreeMap<ProductId, i64>,
    /// Admin stock adjustments, in order (they also stamp `updated_at`).
    pub adjustments: Vec<(ProductId, i64)>,
    /// Balance moved per user.
    pub balances: BTreeMap<UserId, i64>,
    /// Coupons issued per definition.
    pub issued: BTreeMap<CouponId, i64>,
    /// User coupons to insert.
    pub new_user_coupons: BTreeSet<UserCouponId>,
    /// Existing user coupons taken or given back.
    pub user_coupons: BTreeSet<UserCouponId>,
    pub ledger: Vec<LedgerEntry>,
    /// Data-platform events: the order as it is when the event happens.
    pub events: Vec<(EventType, Order)>,
    /// Units sold per (hour of payment, product); negative for refunds.
    pub sales: BTreeMap<(i64, ProductId), i64>,
}

impl Changes {
    /// Whether anything is to be written.
    pub fn is_empty(&self) -> bool {
        self.new_orders.is_empty()
            && self.orders.is_empty()
            && self.stock.is_empty()
            && self.adjustments.is_empty()
            && self.balances.is_empty()
            && self.issued.is_empty()
            && self.new_user_coupons.is_empty()
            && self.user_coupons.is_empty()
            && self.ledger.is_empty()
            && self.events.is_empty()
    }

    /// Products whose stock (or anything shown about them) changed.
    pub fn products(&self) -> impl Iterator<Item = ProductId> + '_ {
        self.stock.keys().copied()
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
        Work::Pay { order, caller } => pay(state, *order, *caller, now_ms)
            .map(Done::Order)
            .map_err(Refused::from),
        Work::Cancel { order, caller } => cancel(state, *order, *caller, now_ms)
            .map(Done::Order)
            .map_err(Refused::from),
        Work::Charge { user, amount } => charge(state, *user, *amount, rules.max_balance)
            .map(Done::Balance)
            .map_err(Refused::from),
        Work::Issue { coupon, user } => issue(state, *coupon, *user, now)
            .map(Done::Issued)
            .map_err(Refused::from),
        Work::AdjustStock { product, delta } => adjust_stock(state, *product, *delta)
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
    let demand = crate::order::demand(&req.lines);
    for (&product, &quantity) in &demand {
        match state.products.get(&product) {
            None => return Err(OrderError::ProductNotFound(product)),
            Some(p) if p.stock < quantity => return Err(OrderError::InsufficientStock(product)),
            Some(_) => {}
        }
    }
    let items = req
        .lines
        .iter()
        .map(|line| {
            let p = &state.products[&line.product];
            Ok(OrderItem {
                product_id: line.product,
                name: p.name.clone(),
                unit_price: p.price,
                quantity: line.quantity,
                amount: p.price.checked_mul(line.quantity).ok_or_else(overflow)?,
            })
        })
        .collect::<Result<Vec<_>, OrderError>>()?;
    let total = money::order_total(items.iter().map(|i| (i.unit_price, i.quantity)))
        .ok_or_else(overflow)?;
    let discount = match req.user_coupon {
        None => Won::ZERO,
        Some(id) => {
            let c = state
                .user_coupons
                .get(&id)
                .filter(|c| c.user == req.user)
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
            money::discount(c.discount_type, c.discount_value, total)
        }
    };
    let final_amount = Won(total.0 - discount.0);
    if req.pay && state.users[&req.user].balance < final_amount {
        return Err(OrderError::InsufficientBalance);
    }

    // Every check passed: apply.
    let id = OrderId(state.order_ids.take(reserved));
    for (&product, &quantity) in &demand {
        move_stock(state, product, -quantity);
    }
    if let Some(c) = req.user_coupon {
        state.user_coupons.get_mut(&c).expect("checked").order = Some(id);
        state.changes.user_coupons.insert(c);
    }
    let order = Order {
        id,
        user_id: req.user,
        status: OrderStatus::Pending,
        items,
        user_coupon_id: req.user_coupon,
        total_amount: total,
        discount_amount: discount,
        final_amount,
        created_at: from_millis(now_ms),
        paid_at: None,
        expires_at: from_millis(now_ms + rules.order.ttl.num_milliseconds()),
    };
    state.orders.insert(
        id,
        OrderRow {
            order,
            cancelled_at: None,
        },
    );
    state.changes.new_orders.insert(id);
    if req.pay {
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
        return Err(OrderError::InsufficientBalance);
    }
    settle_payment(state, id, now_ms);
    Ok(state.orders[&id].order.clone())
}

/// Marks a PENDING order PAID and does what paying does besides: the debit with its
/// ledger entry, the sales rollup and the `order.paid` event. The caller checked the
/// balance.
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
    for (product, quantity) in order.quantities() {
        record_sale(state, now_ms, product, quantity);
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
    release(state, &order);
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
        for (product, quantity) in order.quantities() {
            record_sale(state, paid_at, product, -quantity);
        }
    }
    state
        .changes
        .events
        .push((EventType::OrderCancelled, order.clone()));
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
    release(state, &order);
    Some(order)
}

/// Gives back the stock and coupon an order held.
fn release(state: &mut State, order: &Order) {
    for (product, quantity) in order.quantities() {
        move_stock(state, product, quantity);
    }
    if let Some(c) = order.user_coupon_id
        && let Some(uc) = state.user_coupons.get_mut(&c)
        && uc.order == Some(order.id)
    {
        uc.order = None;
        state.changes.user_coupons.insert(c);
    }
}

fn touch_order(state: &mut State, id: OrderId) {
    if !state.changes.new_orders.contains(&id) {
        state.changes.orders.insert(id);
    }
}

fn move_stock(state: &mut State, product: ProductId, delta: i64) {
    if let Some(p) = state.products.get_mut(&product) {
        p.stock += delta;
    }
    *state.changes.stock.entry(product).or_insert(0) += delta;
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

fn record_sale(state: &mut State, paid_at_ms: i64, product: ProductId, quantity: i64) {
    *state
        .changes
        .sales
        .entry((paid_at_ms.div_euclid(HOUR_MS), product))
        .or_insert(0) += quantity;
}

fn charge(
    state: &mut State,
    user: UserId,
    amount: Won,
    max_balance: Won,
) -> Result<Balance, BalanceError> {
    let row = state
        .users
        .get(&user)
        .ok_or(BalanceError::UserNotFound(user))?;
    if row.balance.0 > max_balance.0 - amount.0 {
        return Err(BalanceError::LimitExceeded(max_balance));
    }
    let balance = move_balance(state, user, amount.0, LedgerKind::Charge, None);
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
        discount_type: coupon.discount_type,
        discount_value: coupon.discount_value,
        min_order_amount: coupon.min_order_amount,
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
    Ok(UserCoupon {
        id,
        coupon_id,
        user_id: user,
        status: UserCouponStatus::Available,
        issued_at: from_millis(now_ms),
        expires_at: from_millis(expires_at),
    })
}

fn adjust_stock(state: &mut State, id: ProductId, delta: i64) -> Result<Product, ProductError> {
    let p = state.products.get(&id).ok_or(ProductError::NotFound(id))?;
    let after = p.stock + delta;
    if after < 0 {
        return Err(ProductError::StockBelowZero);
    }
    if after > MAX_STOCK {
        return Err(ProductError::StockTooHigh);
    }
    move_stock(state, id, delta);
    state.changes.adjustments.push((id, delta));
    let p = &state.products[&id];
    Ok(Product {
        id,
        name: p.name.clone(),
        price: p.price,
        stock: p.stock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Line;

    fn rules() -> Rules {
        Rules {
            order: OrderRules {
                max_items: 50,
                max_quantity: 1000,
                ttl: TimeDelta::minutes(5),
            },
            max_balance: Won(100_000),
        }
    }

    fn world() -> State {
        let mut s = State::new(Ids::Next(1), Ids::Next(1));
        s.users.insert(
            UserId(1),
            UserRow {
                balance: Won(10_000),
            },
        );
        s.users.insert(UserId(2), UserRow { balance: Won(0) });
        s.products.insert(
            ProductId(1),
            ProductRow {
                name: "pen".into(),
                price: Won(3_000),
                stock: 2,
            },
        );
        s
    }

    fn order(user: i64, product: i64, quantity: i64, pay: bool) -> Work {
        Work::Place(PlaceOrder {
            user: UserId(user),
            lines: vec![Line {
                product: ProductId(product),
                quantity,
            }],
            user_coupon: None,
            pay,
        })
    }

    #[test]
    fn a_job_sees_the_jobs_before_it_and_a_refusal_changes_nothing() {
        let (mut s, r, now) = (world(), rules(), Utc::now());
        assert!(decide(&mut s, &order(1, 1, 2, true), &r, now).is_ok());
        let refused = decide(&mut s, &order(1, 1, 1, true), &r, now);
        assert!(matches!(
            refused,
            Err(Refused::Order(OrderError::InsufficientStock(_)))
        ));
        assert_eq!(s.products[&ProductId(1)].stock, 0);
        assert_eq!(s.users[&UserId(1)].balance, Won(4_000));
        assert_eq!(s.changes.stock[&ProductId(1)], -2);
        assert_eq!(s.changes.ledger.len(), 1);
        assert_eq!(s.changes.events.len(), 1);
        assert_eq!(s.changes.new_orders.len(), 1);
    }

    #[test]
    fn paying_without_the_money_leaves_nothing_held() {
        let (mut s, r, now) = (world(), rules(), Utc::now());
        let refused = decide(&mut s, &order(2, 1, 1, true), &r, now);
        assert!(matches!(
            refused,
            Err(Refused::Order(OrderError::InsufficientBalance))
        ));
        assert!(s.changes.is_empty());
        assert_eq!(s.products[&ProductId(1)].stock, 2);
        // A refused order takes no id: the next order gets the first.
        let Ok(Done::Order(o)) = decide(&mut s, &order(2, 1, 1, false), &r, now) else {
            panic!()
        };
        assert_eq!(o.id, OrderId(1));
    }

    #[test]
    fn someone_elses_order_is_not_found_and_a_due_one_expires_on_payment() {
        let (mut s, r, now) = (world(), rules(), Utc::now());
        let Ok(Done::Order(o)) = decide(&mut s, &order(1, 1, 1, false), &r, now) else {
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
        assert_eq!(s.products[&ProductId(1)].stock, 2);
        assert_eq!(s.changes.stock[&ProductId(1)], 0);
    }

    #[test]
    fn charges_stop_at_the_balance_limit() {
        let (mut s, r) = (world(), rules());
        let charge = |amount| Work::Charge {
            user: UserId(1),
            amount: Won(amount),
        };
        assert!(decide(&mut s, &charge(90_000), &r, Utc::now()).is_ok());
        assert!(matches!(
            decide(&mut s, &charge(1), &r, Utc::now()),
            Err(Refused::Balance(BalanceError::LimitExceeded(_)))
        ));
        assert_eq!(s.users[&UserId(1)].balance, Won(100_000));
    }
}

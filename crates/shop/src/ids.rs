//! Id newtypes, so a product id is never passed where an order id is expected.
//! On the wire every id is a positive 64-bit integer.

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> $name {
                $name(id)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }
    )*};
}

id_type!(
    /// A user (a buyer with a balance).
    UserId,
    /// A product.
    ProductId,
    /// A coupon definition.
    CouponId,
    /// One coupon issued to one user.
    UserCouponId,
    /// An order.
    OrderId,
    /// A balance ledger entry.
    LedgerId,
    /// One sellable version of a product (a size, a colour), holding its own stock.
    VariantId,
    /// One payment attempt of an order.
    PaymentId,
    /// A login session (its access and refresh tokens).
    SessionId,
);

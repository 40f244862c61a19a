//! Money is an integer number of won. All arithmetic is checked: an overflow is an
//! error for the caller to turn into a refusal, never a wrap-around.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount of KRW (won). Never a float.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    sqlx::Type,
    ToSchema,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Won(pub i64);

impl Won {
    pub const ZERO: Won = Won(0);

    pub fn checked_add(self, other: Won) -> Option<Won> {
        self.0.checked_add(other.0).map(Won)
    }

    pub fn checked_sub(self, other: Won) -> Option<Won> {
        self.0.checked_sub(other.0).map(Won)
    }

    pub fn checked_mul(self, quantity: i64) -> Option<Won> {
        self.0.checked_mul(quantity).map(Won)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl std::fmt::Display for Won {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} won", self.0)
    }
}

/// How a coupon discounts an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscountType {
    /// `value` won off the total, never below zero.
    Fixed,
    /// `value` percent (1..=100) off the total, rounded down to the won.
    Rate,
}

impl DiscountType {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountType::Fixed => "FIXED",
            DiscountType::Rate => "RATE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "FIXED" => Some(DiscountType::Fixed),
            "RATE" => Some(DiscountType::Rate),
            _ => None,
        }
    }
}

/// The discount a coupon gives on `total`. Never more than `total`, never negative;
/// a rate is rounded down to the won. `value` is assumed validated (positive; a rate
/// at most 100), but out-of-range values are clamped rather than trusted.
pub fn discount(kind: DiscountType, value: i64, total: Won) -> Won {
    if total.0 <= 0 || value <= 0 {
        return Won::ZERO;
    }
    let off = match kind {
        DiscountType::Fixed => value,
        DiscountType::Rate => {
            let rate = i128::from(value.min(100));
            // total * rate fits in i128; the quotient is at most total.
            (i128::from(total.0) * rate / 100) as i64
        }
    };
    Won(off.min(total.0))
}

/// The order total: the sum of unit price times quantity, or `None` on overflow.
pub fn order_total(lines: impl IntoIterator<Item = (Won, i64)>) -> Option<Won> {
    lines.into_iter().try_fold(Won::ZERO, |acc, (price, qty)| {
        acc.checked_add(price.checked_mul(qty)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_discount_takes_value_off_but_never_below_zero() {
        assert_eq!(
            discount(DiscountType::Fixed, 3_000, Won(10_000)),
            Won(3_000)
        );
        assert_eq!(
            discount(DiscountType::Fixed, 30_000, Won(10_000)),
            Won(10_000)
        );
    }

    #[test]
    fn rate_discount_rounds_down_to_the_won() {
        assert_eq!(discount(DiscountType::Rate, 10, Won(9_999)), Won(999));
        assert_eq!(discount(DiscountType::Rate, 33, Won(100)), Won(33));
        assert_eq!(discount(DiscountType::Rate, 15, Won(1)), Won(0));
        assert_eq!(discount(DiscountType::Rate, 100, Won(12_345)), Won(12_345));
    }

    #[test]
    fn order_total_overflow_is_none() {
        assert_eq!(
            order_total([(Won(1_000), 3), (Won(500), 2)]),
            Some(Won(4_000))
        );
        assert_eq!(order_total([(Won(i64::MAX), 2)]), None);
        assert_eq!(order_total([(Won(i64::MAX), 1), (Won(1), 1)]), None);
    }

    proptest! {
        #[test]
        fn discount_is_between_zero_and_total(
            fixed in any::<bool>(),
            value in 1i64..=1_000_000_000,
            total in 0i64..=i64::MAX,
        ) {
            let kind = if fixed { DiscountType::Fixed } else { DiscountType::Rate };
            let value = if fixed { value } else { value % 100 + 1 };
            let d = discount(kind, value, Won(total));
            prop_assert!(d.0 >= 0 && d.0 <= total);
            if !fixed {
                // floor(total * rate / 100), exactly, computed another way
                let exact = (total as u128 * value as u128) / 100;
                prop_assert_eq!(d.0 as u128, exact);
            }
        }

        #[test]
        fn order_total_matches_wide_arithmetic(
            lines in proptest::collection::vec((0i64..=1_000_000_000, 1i64..=1_000), 1..=50)
        ) {
            let wide: i128 = lines.iter().map(|(p, q)| *p as i128 * *q as i128).sum();
            let got = order_total(lines.iter().map(|(p, q)| (Won(*p), *q)));
            prop_assert_eq!(got.map(|w| w.0 as i128), Some(wide));
        }
    }
}

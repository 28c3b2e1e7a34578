//! Money as integer minor units plus an ISO 4217 currency. Arithmetic is checked: an overflow is
//! a domain error, never a wrap or a panic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::DomainError;

/// An upper-case ISO 4217 alphabetic code, e.g. `USD`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// ISO 4217's "no currency": the placeholder of a blank state.
    pub const XXX: Currency = Currency(*b"XXX");

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl FromStr for Currency {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Self([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(DomainError::validation(
                "currency",
                "must be a 3-letter upper-case ISO 4217 code",
            ))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Checked addition of minor-unit amounts.
pub fn add(a: i64, b: i64) -> Result<i64, DomainError> {
    a.checked_add(b).ok_or(DomainError::Overflow)
}

/// Checked subtraction of minor-unit amounts.
pub fn sub(a: i64, b: i64) -> Result<i64, DomainError> {
    a.checked_sub(b).ok_or(DomainError::Overflow)
}

/// Checked multiplication of minor-unit amounts.
pub fn mul(a: i64, b: i64) -> Result<i64, DomainError> {
    a.checked_mul(b).ok_or(DomainError::Overflow)
}

/// `round_half_even(amount × bps / 10_000)`: banker's rounding, computed in i128 so the
/// intermediate product cannot overflow; a result outside i64 is an overflow error.
pub fn apply_basis_points(amount: i64, bps: i64) -> Result<i64, DomainError> {
    let product = i128::from(amount) * i128::from(bps);
    let quotient = product.div_euclid(10_000);
    let remainder = product.rem_euclid(10_000);
    let rounded = match remainder.cmp(&5_000) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient + 1,
        std::cmp::Ordering::Equal if quotient % 2 == 0 => quotient,
        std::cmp::Ordering::Equal => quotient + 1,
    };
    i64::try_from(rounded).map_err(|_| DomainError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_parses_only_upper_case_iso_codes() {
        assert_eq!("USD".parse::<Currency>().unwrap().as_str(), "USD");
        for bad in ["usd", "US", "USDD", "U$D", ""] {
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tax_rounds_half_to_even() {
        // 0.5 cases go to the even neighbour.
        assert_eq!(apply_basis_points(5, 1_000).unwrap(), 0); // 0.5 -> 0
        assert_eq!(apply_basis_points(15, 1_000).unwrap(), 2); // 1.5 -> 2
        assert_eq!(apply_basis_points(25, 1_000).unwrap(), 2); // 2.5 -> 2
        assert_eq!(apply_basis_points(35, 1_000).unwrap(), 4); // 3.5 -> 4
                                                               // Non-ties round to nearest.
        assert_eq!(apply_basis_points(14, 1_000).unwrap(), 1); // 1.4 -> 1
        assert_eq!(apply_basis_points(16, 1_000).unwrap(), 2); // 1.6 -> 2
        assert_eq!(apply_basis_points(3_000, 1_000).unwrap(), 300);
        assert_eq!(apply_basis_points(1_999, 825).unwrap(), 165); // 164.9175
        assert_eq!(apply_basis_points(0, 9_999).unwrap(), 0);
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(add(i64::MAX, 1), Err(DomainError::Overflow));
        assert_eq!(sub(i64::MIN, 1), Err(DomainError::Overflow));
        assert_eq!(mul(i64::MAX, 2), Err(DomainError::Overflow));
        // The product overflows i64 but the result fits: computed in i128, no error.
        assert_eq!(apply_basis_points(i64::MAX, 10_000).unwrap(), i64::MAX);
        assert_eq!(
            apply_basis_points(i64::MAX, 20_000),
            Err(DomainError::Overflow)
        );
    }
}

//! Money: the [`Amount`] type, a positive yuan amount with exactly two fraction digits, and the
//! only way money enters (parsed from JSON text, never through a float) or leaves (as a string
//! with two decimals).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::PartialSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};

/// A positive amount of money in yuan with two fraction digits, e.g. `10.00` or `0.01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

/// Why a text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be a decimal string like \"10.00\" (digits, at most two fraction digits)")]
    Malformed,
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount must not exceed {0}")]
    TooLarge(Amount),
}

impl Amount {
    /// One fen, the smallest step of an offset.
    pub const CENT: Amount = Amount(Decimal::from_parts(1, 0, 0, false, 2));

    /// Parses the canonical text form: ASCII digits, optionally `.` and one or two digits.
    /// No sign, exponent, whitespace, leading zeros (`"01"`) or thousands separators.
    pub fn parse(text: &str, max: Amount) -> Result<Amount, AmountError> {
        let (int, frac) = match text.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (int.len() > 1 && int.starts_with('0')) {
            return Err(AmountError::Malformed);
        }
        if let Some(frac) = frac
            && (!digits(frac) || frac.len() > 2)
        {
            return Err(AmountError::Malformed);
        }
        // More integer digits than the storage limit has cannot be a valid amount; checking the
        // length first also keeps Decimal from overflowing on absurd inputs.
        if int.len() > 10 {
            return Err(AmountError::TooLarge(max));
        }
        let value = Decimal::from_str(text).map_err(|_| AmountError::Malformed)?;
        Amount::from_decimal(value, max)
    }

    /// Checks a decimal read from storage or computed by the rules: positive, at most two
    /// fraction digits, not above `max`.
    pub fn from_decimal(value: Decimal, max: Amount) -> Result<Amount, AmountError> {
        if value.scale() > 2 && value.normalize().scale() > 2 {
            return Err(AmountError::Malformed);
        }
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        if value > max.0 {
            return Err(AmountError::TooLarge(max));
        }
        let mut value = value;
        value.rescale(2);
        Ok(Amount(value))
    }

    /// An amount read back from the database, where the column type already guarantees the shape.
    pub fn from_stored(value: Decimal) -> Amount {
        let mut value = value;
        value.rescale(2);
        Amount(value)
    }

    /// The largest amount the storage can hold; the bound for payments reported by listeners.
    pub fn storage_limit() -> Amount {
        // numeric(12, 2): ten integer digits.
        Amount(Decimal::from_i128_with_scale(999_999_999_999, 2))
    }

    pub fn as_decimal(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value always carries scale 2, so Decimal prints exactly two fraction digits.
        write!(f, "{}", self.0)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// Amounts read back from our own JSON (e.g. tests, stored snapshots); requests go through
    /// [`AmountInput`] so that a bad amount is reported as `invalid_amount`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Amount::parse(&text, Amount::storage_limit()).map_err(D::Error::custom)
    }
}

fn amount_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^(0|[1-9][0-9]*)(\.[0-9]{1,2})?$"))
        .description(Some(description))
        .examples([serde_json::json!("10.00")])
        .into()
}

impl utoipa::ToSchema for Amount {}

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        amount_schema("An amount in yuan, always with two fraction digits.")
    }
}

/// An amount as a request carries it: a JSON string, or a JSON number read from its exact text.
/// Anything else is kept as written so that validation can answer `invalid_amount` instead of a
/// generic parse error.
#[derive(Debug)]
pub struct AmountInput(Box<RawValue>);

impl AmountInput {
    /// Validates the amount: positive, at most two fraction digits, not above `max`.
    pub fn parse(&self, max: Amount) -> Result<Amount, AmountError> {
        let raw = self.0.get().trim();
        let text = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(inner) => {
                // A JSON string with escapes cannot be a plain decimal anyway.
                if inner.contains('\\') {
                    return Err(AmountError::Malformed);
                }
                inner
            }
            None => raw,
        };
        Amount::parse(text, max)
    }
}

impl<'de> Deserialize<'de> for AmountInput {
    /// Takes a string or a number as written; any other JSON type is a wrong type.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        match raw.get().trim_start().as_bytes().first() {
            Some(b'"' | b'-' | b'0'..=b'9') => Ok(AmountInput(raw)),
            _ => Err(D::Error::custom(
                "amount must be a decimal string (or a JSON number)",
            )),
        }
    }
}

impl utoipa::ToSchema for AmountInput {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("AmountInput")
    }
}

impl PartialSchema for AmountInput {
    fn schema() -> RefOr<Schema> {
        amount_schema(
            "An amount in yuan: a decimal string with at most two fraction digits (a JSON number \
             is also accepted and read exactly). Zero, negative, exponent forms and amounts over \
             the configured maximum are refused with `invalid_amount`.",
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn max() -> Amount {
        Amount::parse("50000.00", Amount::storage_limit()).unwrap()
    }

    #[test]
    fn canonical_amounts_parse_and_print_with_two_decimals() {
        for (text, printed) in [
            ("10.00", "10.00"),
            ("10", "10.00"),
            ("0.01", "0.01"),
            ("1.5", "1.50"),
            ("50000", "50000.00"),
        ] {
            assert_eq!(
                Amount::parse(text, max()).unwrap().to_string(),
                printed,
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_zero_negative_and_huge_amounts_are_refused() {
        for text in [
            "", "0", "0.00", "-1", "+1", "1.001", "1e2", "1E2", "NaN", "inf", " 1", "1 ", "01",
            "1.", ".5", "1,000.00", "１", "1.0.0", "0x10",
        ] {
            assert!(
                Amount::parse(text, max()).is_err(),
                "{text:?} must be refused"
            );
        }
        assert_eq!(
            Amount::parse("50000.01", max()),
            Err(AmountError::TooLarge(max()))
        );
        assert!(Amount::parse("99999999999999999999999999999999", max()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_text_never_panics_and_accepts_only_canonical_amounts(text in "\\PC*") {
            if let Ok(amount) = Amount::parse(&text, max()) {
                // What is accepted prints back as the same number.
                let printed = amount.to_string();
                let canonical = match text.split_once('.') {
                    Some((int, frac)) => format!("{int}.{frac:0<2}"),
                    None => format!("{text}.00"),
                };
                proptest::prop_assert_eq!(printed, canonical);
            }
        }

        #[test]
        fn reading_any_json_amount_never_panics(json in "\\PC*") {
            if let Ok(input) = serde_json::from_str::<AmountInput>(&json) {
                let _ = input.parse(max());
            }
        }
    }

    #[test]
    fn json_numbers_are_read_from_their_exact_text() {
        let parse = |json: &str| {
            let input: AmountInput = serde_json::from_str(json).unwrap();
            input.parse(max()).map(|a| a.to_string())
        };
        assert_eq!(parse("10.5").unwrap(), "10.50");
        assert_eq!(parse("\"10.50\"").unwrap(), "10.50");
        // 0.1 + 0.2 style float noise can never appear: the digits are taken as written.
        assert_eq!(parse("0.30").unwrap(), "0.30");
        assert!(parse("1e2").is_err());
        assert!(parse("1.001").is_err());
        assert!(parse("\"1\\u0030\"").is_err());
        // Other JSON types are not amounts at all.
        for json in ["true", "null", "{}", "[1]"] {
            assert!(serde_json::from_str::<AmountInput>(json).is_err(), "{json}");
        }
    }
}

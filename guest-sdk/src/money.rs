//! Exact decimals and integer money: no floating point number is ever involved.
//!
//! A vendor price such as `12.505` (a JSON number or a string) is read as a [`Decimal`] from
//! its text, then turned into [`Money`] in the currency's minor units with an explicit
//! [`Rounding`].

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// The most significant digits a [`Decimal`] keeps.
pub const MAX_DIGITS: usize = 38;

/// An exact decimal number: `mantissa × 10^-scale`, with a sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    mantissa: u128,
    /// Digits after the decimal point; negative for a number such as `12e3`.
    scale: i32,
}

impl Decimal {
    /// Whether the number is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative && self.mantissa != 0
    }
}

impl FromStr for Decimal {
    type Err = Error;

    /// Parses `-12.50`, `+3`, `0.125`, `1.25e2`: digits with an optional sign, fraction and
    /// exponent. No `NaN`, no infinity, no thousands separators.
    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = || {
            Error::rejected(
                "invalid-decimal",
                format!("`{text}` is not a decimal number"),
            )
        };
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (number, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (
                &rest[..at],
                rest[at + 1..].parse::<i32>().map_err(|_| bad())?,
            ),
            None => (rest, 0),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > MAX_DIGITS {
            return Err(Error::rejected(
                "invalid-decimal",
                format!("`{text}` has more than {MAX_DIGITS} significant digits"),
            ));
        }
        let mantissa = if digits.is_empty() {
            0
        } else {
            digits.parse::<u128>().map_err(|_| bad())?
        };
        let fraction_len = i32::try_from(fraction.len()).map_err(|_| bad())?;
        let scale = fraction_len.checked_sub(exponent).ok_or_else(bad)?;
        Ok(Self {
            negative,
            mantissa,
            scale,
        })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.is_negative() { "-" } else { "" };
        write!(f, "{sign}{}e{}", self.mantissa, -self.scale)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    /// Reads a JSON number (by its exact text) or a string.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = crate::de::scalar_text(deserializer, "a decimal number")?;
        text.trim().parse().map_err(|e: Error| invalid::<D>(&e))
    }
}

fn invalid<'de, D: Deserializer<'de>>(e: &Error) -> D::Error {
    <D::Error as serde::de::Error>::custom(format!("invalid value: {}", e.message()))
}

/// How to round an amount that has more digits than the currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rounding {
    /// Half to even ("banker's rounding"): 0.125 → 0.12, 0.135 → 0.14. The default: it has no
    /// upward bias over many amounts.
    #[default]
    HalfEven,
    /// Half away from zero: 0.125 → 0.13, -0.125 → -0.13.
    HalfUp,
    /// Refuse any amount that needs rounding.
    Exact,
}

/// An amount of money: integer minor units (cents for EUR, yen for JPY) and an ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// The amount in the currency's minor units.
    pub amount_minor: i64,
    /// The ISO 4217 code, upper case.
    pub currency: String,
}

impl Money {
    /// Converts a decimal amount in major units (`12.50` EUR) into minor units (`1250`).
    ///
    /// # Errors
    ///
    /// `rejected` with code `invalid-currency` for a code that is not three ASCII letters,
    /// `inexact-amount` when `rounding` is [`Rounding::Exact`] and the amount has too many
    /// digits, and `amount-out-of-range` when the result does not fit in an `i64`.
    pub fn from_decimal(
        amount: Decimal,
        currency: &str,
        rounding: Rounding,
    ) -> Result<Self, Error> {
        let exponent = minor_unit_exponent(currency)?;
        let out_of_range = || {
            Error::rejected(
                "amount-out-of-range",
                format!("amount {amount} {currency} is too large"),
            )
        };
        let shift = exponent
            .checked_sub(amount.scale)
            .ok_or_else(out_of_range)?;
        let magnitude = if shift >= 0 {
            let factor = 10u128
                .checked_pow(shift.unsigned_abs())
                .ok_or_else(out_of_range)?;
            amount
                .mantissa
                .checked_mul(factor)
                .ok_or_else(out_of_range)?
        } else {
            let divisor = 10u128.checked_pow(shift.unsigned_abs());
            let (quotient, remainder, divisor) = match divisor {
                Some(d) => (amount.mantissa / d, amount.mantissa % d, d),
                // The divisor exceeds every mantissa: the amount is under half a minor unit.
                None => (0, amount.mantissa, u128::MAX),
            };
            let twice = remainder.saturating_mul(2);
            let up = match rounding {
                Rounding::HalfEven => twice > divisor || (twice == divisor && quotient % 2 == 1),
                Rounding::HalfUp => twice >= divisor,
                Rounding::Exact if remainder != 0 => {
                    return Err(Error::rejected(
                        "inexact-amount",
                        format!("amount {amount} has more digits than {currency} minor units"),
                    ));
                }
                Rounding::Exact => false,
            };
            quotient + u128::from(up)
        };
        let magnitude = i64::try_from(magnitude).map_err(|_| out_of_range())?;
        let amount_minor = if amount.is_negative() {
            -magnitude
        } else {
            magnitude
        };
        Ok(Self {
            amount_minor,
            currency: currency.to_owned(),
        })
    }
}

/// The number of decimal digits of a currency's minor unit (ISO 4217).
///
/// # Errors
///
/// `rejected` with code `invalid-currency` for a code that is not three upper-case ASCII
/// letters.
pub fn minor_unit_exponent(currency: &str) -> Result<i32, Error> {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::rejected(
            "invalid-currency",
            format!("`{currency}` is not an ISO 4217 currency code"),
        ));
    }
    Ok(match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    })
}

#[cfg(test)]
mod tests;

use super::*;

fn minor(text: &str, currency: &str, rounding: Rounding) -> Result<i64, String> {
    let decimal: Decimal = text.parse().map_err(|e: Error| e.code().to_owned())?;
    Money::from_decimal(decimal, currency, rounding)
        .map(|m| m.amount_minor)
        .map_err(|e| e.code().to_owned())
}

#[test]
fn half_even_rounds_ties_to_even() {
    for (text, expected) in [
        ("0.125", 12),
        ("0.135", 14),
        ("1.005", 100),
        ("1.015", 102),
        ("0.1251", 13),
        ("-0.125", -12),
        ("-0.135", -14),
        ("12.5", 1250),
        ("12", 1200),
        ("1.25e1", 1250),
        ("125E-2", 125),
        ("0.004999", 0),
        ("0.0000000000000000000000000000000000000000001", 0),
    ] {
        assert_eq!(
            minor(text, "EUR", Rounding::HalfEven),
            Ok(expected),
            "{text}"
        );
    }
}

#[test]
fn half_up_rounds_ties_away_from_zero() {
    assert_eq!(minor("0.125", "EUR", Rounding::HalfUp), Ok(13));
    assert_eq!(minor("-0.125", "EUR", Rounding::HalfUp), Ok(-13));
    assert_eq!(minor("0.124", "EUR", Rounding::HalfUp), Ok(12));
}

#[test]
fn exact_refuses_rounding() {
    assert_eq!(
        minor("0.125", "EUR", Rounding::Exact),
        Err("inexact-amount".into())
    );
    assert_eq!(minor("0.120", "EUR", Rounding::Exact), Ok(12));
}

#[test]
fn minor_units_follow_the_currency() {
    assert_eq!(minor("1234.5", "JPY", Rounding::HalfEven), Ok(1234));
    assert_eq!(minor("1235.5", "JPY", Rounding::HalfEven), Ok(1236));
    assert_eq!(minor("1.2345", "KWD", Rounding::HalfEven), Ok(1234));
}

#[test]
fn bad_input_is_rejected() {
    for text in [
        "",
        ".",
        "1.2.3",
        "abc",
        "1,5",
        "NaN",
        "inf",
        "--1",
        "1e",
        "1e99999999999",
    ] {
        assert_eq!(
            minor(text, "EUR", Rounding::HalfEven),
            Err("invalid-decimal".into()),
            "{text}"
        );
    }
    assert_eq!(
        minor("1", "eur", Rounding::HalfEven),
        Err("invalid-currency".into())
    );
    assert_eq!(
        minor("1", "EURO", Rounding::HalfEven),
        Err("invalid-currency".into())
    );
    assert_eq!(
        minor("99999999999999999999", "EUR", Rounding::HalfEven),
        Err("amount-out-of-range".into())
    );
    assert_eq!(
        minor("1e40", "EUR", Rounding::HalfEven),
        Err("amount-out-of-range".into())
    );
}

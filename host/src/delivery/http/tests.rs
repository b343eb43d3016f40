use super::attribute;

#[test]
fn printable_ascii_goes_as_it_is() {
    assert_eq!(attribute("order.created.v1"), "order.created.v1");
    assert_eq!(
        attribute("SEED-2026-000417/a_b~c"),
        "SEED-2026-000417/a_b~c"
    );
}

#[test]
fn space_quote_percent_and_non_ascii_are_percent_encoded() {
    assert_eq!(attribute("a b\"c%d"), "a%20b%22c%25d");
    assert_eq!(attribute("Zürich"), "Z%C3%BCrich");
}

use serde_json::json;

use super::*;

fn value(body: &[u8], declared: Option<&str>) -> (Format, Value) {
    let document = decode(body, declared).expect("decodes");
    (document.format, document.value)
}

fn code(body: &[u8], declared: Option<&str>) -> String {
    decode(body, declared)
        .expect_err("refused")
        .code()
        .to_owned()
}

#[test]
fn json_declared_as_json_is_json() {
    let (format, v) = value(br#"{"a": 1.50}"#, Some("application/json"));
    assert_eq!(format, Format::Json);
    assert_eq!(v["a"].to_string(), "1.50", "numbers keep their exact text");
}

#[test]
fn xml_declared_as_json_is_read_as_xml() {
    let body = br#"<?xml version="1.0"?><order><id>7</id><line><sku>A</sku></line><line><sku>B</sku></line><note/></order>"#;
    let (format, v) = value(body, Some("application/json"));
    assert_eq!(format, Format::Xml);
    assert_eq!(
        v,
        json!({"id": "7", "line": [{"sku": "A"}, {"sku": "B"}], "note": null})
    );
}

#[test]
fn xml_attributes_and_namespaces() {
    let body = br#"<o:order xmlns:o="urn:x" id="9"><o:total cur="EUR">12</o:total></o:order>"#;
    let (_, v) = value(body, None);
    assert_eq!(
        v,
        json!({"@id": "9", "total": {"@cur": "EUR", "#text": "12"}})
    );
}

#[test]
fn utf8_bom_is_dropped() {
    let (format, v) = value(b"\xEF\xBB\xBF{\"a\":\"b\"}", Some("application/json"));
    assert_eq!((format, v), (Format::Json, json!({"a": "b"})));
}

#[test]
fn utf16_with_bom_is_decoded() {
    let mut body = vec![0xFF, 0xFE];
    for unit in "{\"a\":\"é\"}".encode_utf16() {
        body.extend_from_slice(&unit.to_le_bytes());
    }
    assert_eq!(value(&body, None).1, json!({"a": "é"}));
}

#[test]
fn form_data_nests_brackets_and_repeats() {
    let body =
        b"id=A%201&items[0][sku]=X&items[1][sku]=Y&items[0][qty]=2&tag=a&tag=b&list[]=1&list[]=2";
    let (format, v) = value(body, Some("application/json"));
    assert_eq!(format, Format::Form);
    assert_eq!(
        v,
        json!({"id": "A 1", "items": [{"sku": "X", "qty": "2"}, {"sku": "Y"}], "tag": ["a", "b"], "list": ["1", "2"]})
    );
}

#[test]
fn json_scalar_is_json() {
    assert_eq!(value(b" 42 ", None), (Format::Json, json!(42)));
}

#[test]
fn bad_bodies_are_rejected_with_their_code() {
    assert_eq!(code(b"", None), "empty-body");
    assert_eq!(code(b"  \n ", None), "empty-body");
    assert_eq!(code(b"{\"a\": 1,}", None), "malformed-json");
    assert_eq!(code(b"<a><b></a>", None), "malformed-xml");
    assert_eq!(code(b"\xff\xfe\x00", None), "invalid-encoding");
    assert_eq!(code(b"{\"a\": \"\xc3\x28\"}", None), "invalid-encoding");
    assert_eq!(
        code(b"hello world, this is prose", Some("application/json")),
        "unsupported-format"
    );
    assert_eq!(
        code(b"a[0=1", Some("application/x-www-form-urlencoded")),
        "malformed-form"
    );
}

#[test]
fn unsupported_format_names_the_declared_type() {
    let error = decode(b"just text", Some("application/json")).expect_err("refused");
    assert!(
        error.message().contains("application/json"),
        "{}",
        error.message()
    );
}

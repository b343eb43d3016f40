//! The contract's rules for the events a plugin returns, checked on every call before anything
//! is committed. A plugin that breaks one fails that message as an `InvalidOutput` fault with
//! the reason, so a misnamed event type is found by the first fixture, not by a consumer that
//! cannot route it.
//!
//! Pure functions of the event's text fields; the JSON check of `data` stays with the caller,
//! which parses it anyway.

/// The longest event type, subject or partition key accepted, in bytes: each travels as a
/// CloudEvents attribute and a header, where a few hundred bytes is already generous.
pub(crate) const MAX_ATTRIBUTE: usize = 1024;

/// Why the event at position `n` breaks the contract, or `None` when it keeps it.
///
/// - The event type is dotted and ends in the payload's schema version: lower-case segments
///   of ASCII letters, digits, `-` and `_`, each starting with a letter, joined by single
///   dots, the last one `v` and a number (`order.created.v1`, `payment.v2`).
/// - The subject and the partition key are not empty, have no white space at either end and
///   no control character.
/// - None is longer than [`MAX_ATTRIBUTE`] bytes.
pub(crate) fn event_fault(
    n: usize,
    event_type: &str,
    subject: &str,
    partition_key: &str,
) -> Option<String> {
    let fault = |what: String| Some(format!("event {n} {what}"));
    for (field, value) in [
        ("event type", event_type),
        ("subject", subject),
        ("partition key", partition_key),
    ] {
        if let Some(at) = value.find(char::is_control) {
            return fault(format!(
                "has a control character in its {field} at byte {at}: it could not be sent as \
                 a CloudEvents attribute"
            ));
        }
        if value.len() > MAX_ATTRIBUTE {
            return fault(format!(
                "has a {field} of {} bytes, over the {MAX_ATTRIBUTE} allowed",
                value.len()
            ));
        }
    }
    if let Some(why) = event_type_fault(event_type) {
        return fault(format!(
            "has event type {event_type:?}, which {why}: the contract asks for dotted lower-case \
             names ending in the schema version, such as \"order.created.v1\""
        ));
    }
    for (field, value) in [("subject", subject), ("partition key", partition_key)] {
        if value.trim().is_empty() {
            return fault(format!("({event_type}) has an empty {field}"));
        }
        if value.trim() != value {
            return fault(format!(
                "({event_type}) has white space at an end of its {field} {value:?}"
            ));
        }
    }
    None
}

/// Why `event_type` is not a dotted, versioned name, or `None` when it is one.
fn event_type_fault(event_type: &str) -> Option<&'static str> {
    if event_type.is_empty() {
        return Some("is empty");
    }
    let segments: Vec<&str> = event_type.split('.').collect();
    for segment in &segments {
        if segment.is_empty() {
            return Some("has an empty segment");
        }
        if !segment.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Some("has a segment that does not start with a lower-case letter");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Some("has a character other than a-z, 0-9, `-` and `_` in a segment");
        }
    }
    if segments.len() < 2 {
        return Some("has no dot");
    }
    let is_version = segments[segments.len() - 1]
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !is_version {
        return Some("does not end in a schema version such as `.v1`");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::event_fault;

    fn fault(event_type: &str) -> Option<String> {
        event_fault(0, event_type, "A-1", "A-1")
    }

    #[test]
    fn dotted_lower_case_names_ending_in_a_version_are_kept() {
        for ok in [
            "order.created.v1",
            "payment.v2",
            "carrier-x.parcel_scanned.v10",
        ] {
            assert_eq!(fault(ok), None, "{ok}");
        }
    }

    #[test]
    fn every_other_event_type_is_refused_with_the_reason() {
        for (bad, why) in [
            ("Order Paid", "does not start with a lower-case letter"),
            ("order paid.v1", "other than a-z"),
            ("order.paid", "schema version"),
            ("order.paid.V1", "lower-case letter"),
            ("order.paid.v", "schema version"),
            ("v1", "no dot"),
            ("order..paid.v1", "empty segment"),
            ("", "is empty"),
            ("Order.paid.v1", "lower-case letter"),
            ("1order.paid.v1", "lower-case letter"),
        ] {
            let message = fault(bad).unwrap_or_else(|| panic!("{bad:?} kept"));
            assert!(message.contains(why), "{bad:?}: {message}");
            assert!(message.contains("order.created.v1"), "{message}");
        }
    }

    #[test]
    fn subjects_and_partition_keys_are_whole_words_of_text() {
        assert!(
            event_fault(2, "a.v1", "", "k")
                .unwrap()
                .contains("empty subject")
        );
        assert!(
            event_fault(2, "a.v1", "s", " ")
                .unwrap()
                .contains("empty partition key")
        );
        assert!(
            event_fault(2, "a.v1", " s", "s")
                .unwrap()
                .contains("white space")
        );
        let control = event_fault(3, "a.v1", "s\n", "s").unwrap();
        assert!(control.starts_with("event 3 has a control character in its subject"));
        let long = "x".repeat(super::MAX_ATTRIBUTE + 1);
        assert!(
            event_fault(0, "a.v1", &long, "s")
                .unwrap()
                .contains("over the 1024")
        );
    }
}

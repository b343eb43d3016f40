//! Which request headers a message keeps: what is stored with it, shown by the dead letter
//! API and passed to its plugin. An allow-list per route, so that nothing a client sends
//! for another purpose (a bearer token, a session cookie) is kept at rest or shown.

use std::collections::BTreeSet;

/// Kept on every route: what the host itself reads, and trace context.
pub(crate) const ALWAYS_KEPT: &[&str] = &[
    "content-type",
    "idempotency-key",
    "traceparent",
    "tracestate",
];

/// The headers a route keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeptHeaders {
    /// Lowercase names the route keeps beyond [`ALWAYS_KEPT`].
    extra: BTreeSet<String>,
}

impl KeptHeaders {
    /// [`ALWAYS_KEPT`] and `extra` (the config has refused credentials already; they are
    /// left out again here).
    pub(crate) fn new(extra: &[String]) -> Self {
        Self {
            extra: extra
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .filter(|name| !crate::config::CREDENTIAL_HEADERS.contains(&name.as_str()))
                .collect(),
        }
    }

    /// The names kept, lowercase: [`ALWAYS_KEPT`] then the route's own.
    pub(crate) fn names(&self) -> Vec<&str> {
        ALWAYS_KEPT
            .iter()
            .copied()
            .chain(self.extra.iter().map(String::as_str))
            .collect()
    }

    /// The headers of `headers` that are kept, in their order.
    pub(crate) fn keep(&self, headers: Vec<(String, String)>) -> Vec<(String, String)> {
        headers
            .into_iter()
            .filter(|(name, _)| {
                let name = name.to_ascii_lowercase();
                ALWAYS_KEPT.contains(&name.as_str()) || self.extra.contains(&name)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), "v".to_owned()))
            .collect()
    }

    #[test]
    fn credentials_and_unnamed_headers_are_dropped_named_ones_kept() {
        let kept = KeptHeaders::new(&["X-Acme-Signature".into(), "Authorization".into()]);
        let names: Vec<String> = kept
            .keep(headers(&[
                "Content-Type",
                "authorization",
                "Cookie",
                "x-acme-signature",
                "x-other",
                "traceparent",
            ]))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["Content-Type", "x-acme-signature", "traceparent"]);
    }
}

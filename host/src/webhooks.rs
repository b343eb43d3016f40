//! Standard Webhooks signatures, both ways: a message carries `webhook-id`, `webhook-timestamp`
//! (when it was signed, Unix seconds) and `webhook-signature` (`v1,` and the base64
//! HMAC-SHA256 of `id.timestamp.body` under a shared secret; several, space-separated, while a
//! secret rotates). The host signs what it delivers to a sink that has a secret
//! (`delivery/http.rs`), and checks what a route with `standard_webhooks` auth receives
//! (`door.rs`), so either side can tell a message came from the other, unchanged, and
//! recently.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::config::Secret;

/// A Standard Webhooks key.
pub(crate) struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// The key of a secret given as the specification shows it: `whsec_` and base64 (the
    /// prefix may be left out).
    pub(crate) fn new(secret: &Secret) -> Result<Self, String> {
        let text = secret.expose();
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "the signing secret is not `whsec_` and base64".to_owned())?;
        if key.len() < 16 {
            return Err("the signing secret is shorter than 16 bytes".into());
        }
        Ok(Self { key })
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac
    }

    /// The three headers for a delivery of `body` as event `id` at `timestamp`.
    pub(crate) fn headers(
        &self,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> [(&'static str, String); 3] {
        let mac = self.mac(id, &timestamp.to_string(), body);
        let signature = STANDARD.encode(mac.finalize().into_bytes());
        [
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", format!("v1,{signature}")),
        ]
    }

    /// Whether one of the `v1` signatures of `signatures` (the `webhook-signature` header) is
    /// this key's of `body` as message `id` at `timestamp` (the headers' text as sent);
    /// compared in constant time.
    pub(crate) fn verifies(
        &self,
        id: &str,
        timestamp: &str,
        body: &[u8],
        signatures: &str,
    ) -> bool {
        signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            .any(|signature| {
                self.mac(id, timestamp, body)
                    .verify_slice(&signature)
                    .is_ok()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_specification_s_example() {
        // The example of the Standard Webhooks specification.
        let signer = Signer::new(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        let [_, _, (_, signature)] = signer.headers(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verifies_its_own_signature_among_others_and_nothing_changed() {
        let signer = Signer::new(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        let body = br#"{"test": 2432232314}"#;
        let [_, _, (_, signature)] = signer.headers("msg_1", 1_614_265_330, body);
        let header = format!("v1,bm90IHRoaXM= {signature}");
        assert!(signer.verifies("msg_1", "1614265330", body, &header));
        assert!(
            !signer.verifies("msg_1", "1614265331", body, &header),
            "another time"
        );
        assert!(
            !signer.verifies("msg_2", "1614265330", body, &header),
            "another id"
        );
        assert!(
            !signer.verifies("msg_1", "1614265330", b"{}", &header),
            "another body"
        );
        assert!(!signer.verifies("msg_1", "1614265330", body, "v2,abc"));
    }

    #[test]
    fn a_secret_that_is_not_base64_is_refused() {
        assert!(Signer::new(&Secret::new("whsec_not base64!")).is_err());
        assert!(Signer::new(&Secret::new("whsec_c2hvcnQ=")).is_err());
    }
}

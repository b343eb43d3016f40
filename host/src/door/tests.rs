use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderMap;

use super::Doors;
use crate::clock::ManualClock;
use crate::config::{Config, Secret};
use crate::outcome::Refusal;
use crate::telemetry::Metrics;
use crate::webhooks::Signer;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn doors(clock: Arc<ManualClock>) -> Doors {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "data"
[routes.open]
plugin = "p.wasm"
[routes.bearer]
plugin = "p.wasm"
auth = {{ bearer = ["first", "second"] }}
[routes.basic]
plugin = "p.wasm"
auth = {{ basic = {{ user = "erp", password = "s3cret" }} }}
[routes.signed]
plugin = "p.wasm"
auth = {{ standard_webhooks = {{ secret = "{SECRET}", tolerance_secs = 300 }} }}
"#
    );
    let config = Config::parse(&text, Path::new(".")).unwrap();
    Doors::new(&config, clock, Arc::new(Metrics::default())).unwrap()
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, value.parse().unwrap());
    }
    map
}

fn refused(result: Result<(), Refusal>) -> String {
    match result {
        Err(Refusal::Unauthenticated { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_bearer_route_takes_any_of_its_tokens_in_any_case_of_the_scheme() {
    let doors = doors(Arc::new(ManualClock::new(jiff::Timestamp::UNIX_EPOCH)));
    let auth = |value: &str| headers(&[("authorization", value.to_owned())]);
    assert!(doors.before_body("bearer", &auth("Bearer first")).is_ok());
    assert!(doors.before_body("bearer", &auth("bearer second")).is_ok());
    refused(doors.before_body("bearer", &HeaderMap::new()));
    refused(doors.before_body("bearer", &auth("Bearer firs")));
    refused(doors.before_body("bearer", &auth("Basic Zmlyc3Q=")));
    assert!(doors.before_body("open", &HeaderMap::new()).is_ok());
    // A signed route checks nothing before the body.
    assert!(doors.before_body("signed", &HeaderMap::new()).is_ok());
}

#[test]
fn a_basic_route_takes_its_user_and_password_only() {
    let doors = doors(Arc::new(ManualClock::new(jiff::Timestamp::UNIX_EPOCH)));
    let basic = |pair: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        headers(&[("authorization", format!("Basic {encoded}"))])
    };
    assert!(doors.before_body("basic", &basic("erp:s3cret")).is_ok());
    refused(doors.before_body("basic", &basic("erp:wrong")));
    refused(doors.before_body("basic", &basic("other:s3cret")));
    let reason =
        refused(doors.before_body("basic", &headers(&[("authorization", "Basic !!".into())])));
    assert!(reason.contains("base64"), "{reason}");
}

#[test]
fn a_signed_route_checks_the_signature_and_the_timestamp_s_age() {
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let doors = doors(clock.clone());
    let signer = Signer::new(&Secret::new(SECRET)).unwrap();
    let body = br#"{"payment": 1}"#;
    let signed = |at: i64, body: &[u8]| {
        let [id, timestamp, signature] = signer.headers("msg_1", at, body);
        headers(&[id, timestamp, signature])
    };
    assert!(
        doors
            .with_body("signed", &signed(now.as_second(), body), body)
            .is_ok()
    );
    let other = br#"{"payment": 2}"#;
    let reason = refused(doors.with_body("signed", &signed(now.as_second(), body), other));
    assert!(reason.contains("no `webhook-signature`"), "{reason}");
    let old = now.as_second() - 600;
    let reason = refused(doors.with_body("signed", &signed(old, body), body));
    assert!(reason.contains("tolerance"), "{reason}");
    assert!(
        doors
            .with_body("signed", &signed(now.as_second() - 299, body), body)
            .is_ok()
    );
    refused(doors.with_body("signed", &HeaderMap::new(), body));
    clock.advance(Duration::from_secs(301));
    refused(doors.with_body("signed", &signed(now.as_second(), body), body));
}

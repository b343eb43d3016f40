//! Resident memory over a hundred swaps (issue 11), measured in a test binary of its own so
//! that no other test's load moves the figures: `cargo test` runs test binaries one at a
//! time.

use serde_json::json;
use tests::net::Webhook;
use tests::swap::{Swapping, one_swap, order};

#[test]
fn issue_11_a_hundred_swaps_do_not_grow_resident_memory_by_more_than_one_version() {
    let webhook = Webhook::start();
    let rig = Swapping::start(&webhook, false);
    let activate = |version: &str| {
        let body = json!({ "version": version }).to_string();
        let reply = rig.call(
            "POST",
            "/v1/plugins/acme-erp-orders/activate",
            body.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.json());
    };
    let message = |n: usize| {
        let reply = rig.http.send(
            "POST",
            &rig.url("/v1/routes/orders/messages"),
            &[("content-type", "application/json")],
            order(&format!("MEM-{n}")).as_bytes(),
        );
        assert_eq!(reply.unwrap().status, 202);
    };
    // One version's footprint: what loading v2 beside v1 (and serving with it) costs.
    for n in 0..20 {
        message(n);
    }
    let before = rig.server.resident_bytes();
    one_swap(&rig.upload("acme-erp-orders", &rig.v2));
    for n in 20..40 {
        message(n);
    }
    let footprint = rig.server.resident_bytes().saturating_sub(before);
    // Warm up: each version loaded and dropped several times, so that the blocking threads,
    // their allocator arenas and the store's caches exist before the count starts.
    for i in 0..30 {
        activate(if i % 2 == 0 { "1.0.0" } else { "2.0.0" });
        message(100 + i);
    }
    let warm = rig.server.resident_bytes();
    for i in 0..100 {
        activate(if i % 2 == 0 { "1.0.0" } else { "2.0.0" });
        message(1000 + i);
    }
    let after = rig.server.resident_bytes();
    let grown = after.saturating_sub(warm);
    eprintln!(
        "resident: {} KiB warm, {} KiB after 100 swaps (+{} KiB); one version: {} KiB",
        warm >> 10,
        after >> 10,
        grown >> 10,
        footprint >> 10
    );
    assert!(
        grown <= footprint.max(1 << 20),
        "grew {grown} bytes over 100 swaps; one version is {footprint}"
    );
}

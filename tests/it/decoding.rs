//! What the fuzz target `host/fuzz/fuzz_targets/request_decoding.rs` checks, on stable: any
//! key and body give `Ok` or a 4xx, never a panic. Inputs: the plugins' fixtures, mutated
//! by a seeded generator, and random bytes.

use rand::{RngExt, SeedableRng};

fn check(content_type: Option<&str>, key: Option<&[u8]>, body: &[u8]) {
    if let Err(refusal) = dragoman::check_message(content_type, key, body) {
        let status = dragoman::transport::refusal_status(&refusal).as_u16();
        assert!(
            (400..500).contains(&status),
            "{status} for {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn request_decoding_never_panics_and_refuses_with_a_4xx() {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for dir in [
        tests::wasm::ACME_ERP_ORDERS_FIXTURES,
        tests::wasm::ACME_ERP_ORDERS_V2_FIXTURES,
    ] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains(".input.") {
                seeds.push(std::fs::read(path).unwrap());
            }
        }
    }
    let types = [
        None,
        Some("application/json"),
        Some("application/xml"),
        Some("application/x-www-form-urlencoded"),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut accepted = 0;
    for round in 0..20_000 {
        let mut body = if round % 5 == 0 {
            (0..rng.random_range(0..64))
                .map(|_| rng.random::<u8>())
                .collect()
        } else {
            seeds[rng.random_range(0..seeds.len())].clone()
        };
        for _ in 0..rng.random_range(0..4) {
            if body.is_empty() {
                break;
            }
            let at = rng.random_range(0..body.len());
            match rng.random_range(0..4) {
                0 => body[at] = rng.random(),
                1 => {
                    body.remove(at);
                }
                2 => body.insert(
                    at,
                    *b"<>{}[]&=\"\\\xef\xbb\xbf\xff"
                        .get(rng.random_range(0..14))
                        .unwrap(),
                ),
                _ => body.truncate(at),
            }
        }
        let key: Vec<u8> = (0..rng.random_range(0..300))
            .map(|_| rng.random_range(0..128u8))
            .collect();
        let key = (round % 3 == 0).then_some(key.as_slice());
        let content_type = types[round % types.len()];
        check(content_type, key, &body);
        accepted += usize::from(dragoman::check_message(content_type, None, &body).is_ok());
    }
    assert!(
        accepted > 1000,
        "the mutated fixtures still include well-formed bodies: {accepted}"
    );
}

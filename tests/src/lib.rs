//! Shared helpers of the integration tests: the paths of the wasm guests that `build.rs`
//! built, a runtime per set of limits, and the `dragoman` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use dragoman::plugin::{Limits, Plugin, Runtime, VendorMessage};

pub mod browser;
pub mod dev;
pub mod jetstream;
pub mod net;
pub mod otlp;
pub mod pg;
pub mod proxy;
pub mod swap;
pub mod tls;
pub mod vendor;

/// Paths of the components built for the tests.
pub mod wasm {
    include!(concat!(env!("OUT_DIR"), "/wasm.rs"));
}

/// The NATS server with JetStream the tests publish to: `DRAGOMAN_TEST_NATS_URL`, which
/// `tests/run` sets (to a server it started when none served on the standard port), else
/// the standard port on loopback.
pub fn nats_url() -> String {
    std::env::var("DRAGOMAN_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A cache directory shared by every test of this process, so each component compiles once.
pub fn shared_cache() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
        .path()
}

/// The limits the containment tests use: short enough to keep the suite quick.
pub fn test_limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(300),
        memory: 32 << 20,
        output: 1 << 20,
        ..Limits::default()
    }
}

/// A runtime with [`test_limits`] and the shared cache.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::builder()
            .limits(test_limits())
            .cache_dir(shared_cache())
            .build()
            .expect("the test runtime builds")
    })
}

/// Loads a component into the shared runtime.
///
/// # Panics
///
/// When the component does not load: the tests that need a failure call `Runtime::load`.
pub fn load(path: &str) -> Plugin {
    runtime()
        .load_file(path)
        .unwrap_or_else(|e| panic!("{path} loads: {e}"))
}

/// The path of a component built by a non-Rust toolchain, or a panic with why its build failed.
///
/// # Panics
///
/// When the build failed.
pub fn built(path: &'static str, build: Result<(), &str>) -> &'static str {
    if let Err(e) = build {
        panic!("{path} was not built: {e}");
    }
    path
}

/// Runs every fixture in `dir` through the component at `path`; panics with the diffs of the
/// failing ones, else returns how many passed.
///
/// # Panics
///
/// When a fixture fails or cannot be read.
pub fn passes_fixtures(path: &str, dir: &str) -> usize {
    use dragoman::fixtures::{self, Verdict};
    let plugin = load(path);
    let found = fixtures::discover(dir.as_ref()).expect("fixtures are readable");
    let failures: Vec<String> = found
        .iter()
        .filter_map(
            |fixture| match fixtures::run(&plugin, fixture).expect("fixture runs") {
                Verdict::Pass => None,
                Verdict::Fail { diff } => Some(format!("{}:\n{diff}", fixture.name)),
            },
        )
        .collect();
    assert!(
        failures.is_empty(),
        "failing fixtures of {path}:\n{}",
        failures.join("\n")
    );
    found.len()
}

/// Translates the seed order with a fresh instance, then five times on one reused instance,
/// and checks every output is the same.
///
/// # Panics
///
/// When they differ or a call fails.
pub fn reuse_gives_the_fresh_output(path: &str) {
    use std::sync::Arc;
    let plugin = load(path);
    let instances = dragoman::plugin::Instances::new(plugin.clone(), Arc::default(), 10);
    let fresh = plugin
        .translate(&message(seed_order()), Arc::default())
        .expect("no fault")
        .expect("translates");
    for _ in 0..5 {
        let mut lease = instances.get().expect("an instance");
        let reused = lease
            .translate(&message(seed_order()))
            .expect("no fault")
            .expect("translates");
        assert_eq!(reused, fresh);
    }
}

/// One instance of the plugin at `path` translates the seed order `calls` times: its linear
/// memory after the last call is what it was after the first (a reused instance keeps no
/// state that grows with the messages it has seen).
///
/// # Panics
///
/// When it grew, or a call fails.
pub fn reused_memory_stays_flat(path: &str, calls: usize) {
    let plugin = load(path);
    let mut session = plugin
        .session(std::sync::Arc::default())
        .expect("an instance");
    let message = message(seed_order());
    let mut after_first = 0;
    for n in 1..=calls {
        session
            .translate(&message)
            .expect("no fault")
            .expect("translates");
        if n == 1 {
            after_first = session.memory_bytes();
        }
    }
    assert!(after_first > 0, "the instance has memory");
    assert_eq!(
        session.memory_bytes(),
        after_first,
        "linear memory after {calls} calls against after one"
    );
}

/// A JSON message with the given body.
pub fn message(body: &str) -> VendorMessage {
    VendorMessage {
        id: "test-message".into(),
        content_type: Some("application/json".into()),
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

/// The 1 KiB seed order of the benchmarks and the quickstart.
pub fn seed_order() -> &'static str {
    include_str!("../../examples/seed-order.json")
}

/// The `dragoman` binary, built on first use with the cargo that runs the tests.
pub fn dragoman_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_bin("dragoman"))
}

/// The `embed` example's binary (`examples/embed`), built on first use.
pub fn embed_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_bin("embed"))
}

/// Builds the workspace's binary `bin` with the cargo that runs the tests, and returns its
/// path.
///
/// The build selects what `cargo test --workspace` selects (every member, with the test
/// targets, so dev-dependencies count), so that cargo resolves the same features and finds
/// every dependency built already: only the binary itself compiles. Selected with `-p`
/// alone, its dependencies resolve other features, and wasmtime and everything on it would
/// be built a second time, inside the test run.
fn cargo_bin(bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--workspace",
            "--tests",
            "--bin",
            bin,
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "building {bin} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|m| {
            // The binary itself, not its unit tests' harness (also a `bin` target).
            (m["reason"] == "compiler-artifact"
                && m["target"]["name"] == bin
                && m["target"]["kind"][0] == "bin"
                && m["profile"]["test"] == false)
                .then(|| m["executable"].as_str().map(PathBuf::from))
                .flatten()
        })
        .unwrap_or_else(|| panic!("cargo reports the {bin} executable"))
}

/// Translates `count` generated vendor orders (seeded, so a failure repeats) with the Rust
/// `acme-erp-orders` and with the component at `path`, each order under one of several
/// currencies, and checks both give the same events, or refuse with the same code.
///
/// The orders mix the usual shape with odd but valid values (prices as strings, with leading
/// and trailing zeros, exponents, more digits than a float keeps; padded fields; numbers where
/// text is expected) and carry at most one defect each (a bad price, quantity, sku, status or
/// id, a missing field, no lines, an invalid currency), so the refusal is the same whichever
/// order a translator checks the fields in.
///
/// # Panics
///
/// On the first order where they differ, naming it.
pub fn agrees_with_the_rust_translator(path: &str, count: usize) {
    use dragoman::plugin::{PluginConfig, TranslateError};
    use rand::{RngExt, SeedableRng};
    use std::sync::Arc;

    fn outcome(plugin: &Plugin, body: &str, config: &Arc<PluginConfig>) -> String {
        match plugin.translate(&message(body), config.clone()) {
            Err(fault) => panic!("{} faulted on {body}: {fault}", plugin.info().name),
            Ok(Ok(events)) => serde_json::to_string(&events).expect("events serialize"),
            Ok(Err(TranslateError::Rejected(f))) => format!("rejected {}", f.code),
            Ok(Err(TranslateError::Transient(f))) => format!("transient {}", f.code),
        }
    }

    let rust = load(wasm::ACME_ERP_ORDERS);
    let other = load(path);
    let config = |currency: Option<&str>| {
        let mut config = PluginConfig::new();
        if let Some(currency) = currency {
            config.insert("currency".into(), currency.into());
        }
        Arc::new(config)
    };
    let valid: Vec<_> = [None, Some("EUR"), Some("JPY"), Some("BHD"), Some("CLF")]
        .into_iter()
        .map(config)
        .collect();
    let invalid = config(Some("eur"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let (mut translated, mut refused) = (0, 0);
    for n in 0..count {
        let mut order = Generated {
            defects: usize::from(rng.random_range(0..10) < 4),
            rng: &mut rng,
        };
        let config = if order.defects == 1 && order.rng.random_range(0..12) == 0 {
            order.defects = 0;
            &invalid
        } else {
            &valid[order.rng.random_range(0..valid.len())]
        };
        let body = order.body();
        let expected = outcome(&rust, &body, config);
        let actual = outcome(&other, &body, config);
        assert_eq!(
            actual, expected,
            "order {n} under {config:?} differs from the Rust translator:\n{body}"
        );
        if expected.starts_with("rejected") {
            refused += 1;
        } else {
            translated += 1;
        }
    }
    assert!(
        translated * 2 > count && refused * 10 > count,
        "the generated orders should mostly translate and often be refused: {translated} translated, {refused} refused"
    );
}

/// A generator of vendor orders as JSON text, with at most `defects` defects.
struct Generated<'a> {
    rng: &'a mut rand::rngs::StdRng,
    defects: usize,
}

impl Generated<'_> {
    /// `value`, or now and then one of the valid `odd` values, or while a defect is left and
    /// `bad` has one, now and then a defect.
    fn pick(&mut self, value: String, odd: &[&str], bad: &[&str]) -> String {
        use rand::RngExt;
        if self.defects > 0 && !bad.is_empty() && self.rng.random_range(0..6) == 0 {
            self.defects -= 1;
            return bad[self.rng.random_range(0..bad.len())].to_owned();
        }
        if !odd.is_empty() && self.rng.random_range(0..4) == 0 {
            return odd[self.rng.random_range(0..odd.len())].to_owned();
        }
        value
    }

    fn body(&mut self) -> String {
        use rand::RngExt;
        let id = format!("\"ORD-{}\"", self.rng.random_range(0..100_000));
        let id = self.pick(id, &["42", "\"  ORD-7 \""], &["\" \"", "null"]);
        let status = format!("\"{}\"", ["O", "C", "X"][self.rng.random_range(0..3)]);
        let status = self.pick(status, &["\" C \""], &["\"Z\"", "\"\"", "1", "\"open\""]);
        let count = if self.defects > 0 && self.rng.random_range(0..10) == 0 {
            self.defects -= 1;
            0
        } else {
            self.rng.random_range(1..6)
        };
        let mut lines = Vec::new();
        for _ in 0..count {
            lines.push(self.line());
        }
        format!(
            "{{\"ord_id\": {id}, \"ord_status\": {status}, \"line_items\": [{}]}}",
            lines.join(", ")
        )
    }

    fn line(&mut self) -> String {
        use rand::RngExt;
        let digits = self.rng.random_range(0..9);
        let whole = self.rng.random_range(0..10u64.pow(digits));
        let fraction: String = (0..self.rng.random_range(0..7))
            .map(|_| char::from(b'0' + self.rng.random_range(0..10u8)))
            .collect();
        let mut price = if fraction.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{fraction}")
        };
        if self.rng.random_range(0..5) == 0 {
            price = format!("\"{price}\"");
        }
        let price = self.pick(
            price,
            &[
                "0.125",
                "0.135",
                "2.5e1",
                "1E-3",
                "-0.00",
                "\" 12.30 \"",
                "\"007.50\"",
                "12345678901234567.5",
                "0.12500000000000000001",
                "99999999999999.995",
            ],
            &["-3.5", "\"12.3.4\"", "\"abc\"", "\"\"", "null", "true"],
        );
        let qty = self.rng.random_range(1..100).to_string();
        let qty = self.pick(
            qty,
            &["\"5\"", "\" 3 \"", "123456789012"],
            &["0", "-1", "2.0", "1e2", "2.5"],
        );
        let sku = format!("\"ACME-{}\"", self.rng.random_range(0..1000));
        let sku = self.pick(sku, &["17", "\" ACME-PAD \""], &["\"\"", "\"  \""]);
        let mut fields = vec![
            format!("\"sku\": {sku}"),
            format!("\"qty\": {qty}"),
            format!("\"unit_prc\": {price}"),
        ];
        if self.defects > 0 && self.rng.random_range(0..12) == 0 {
            self.defects -= 1;
            fields.remove(self.rng.random_range(0..fields.len()));
        }
        format!("{{{}}}", fields.join(", "))
    }
}

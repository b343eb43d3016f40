//! Shared helpers of the integration tests: the paths of the wasm guests that `build.rs`
//! built, a runtime per set of limits, and the `dragoman` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use dragoman::plugin::{Limits, Plugin, Runtime, VendorMessage};

pub mod net;

/// Paths of the components built for the tests.
pub mod wasm {
    include!(concat!(env!("OUT_DIR"), "/wasm.rs"));
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
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "dragoman",
                "--bin",
                "dragoman",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo runs");
        assert!(
            output.status.success(),
            "building dragoman failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find_map(|m| {
                (m["reason"] == "compiler-artifact"
                    && m["target"]["name"] == "dragoman"
                    && m["target"]["kind"][0] == "bin")
                    .then(|| m["executable"].as_str().map(PathBuf::from))
                    .flatten()
            })
            .expect("cargo reports the dragoman executable")
    })
}

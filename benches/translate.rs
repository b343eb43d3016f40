//! Translating the 1 KiB seed order: (a) the same logic compiled natively, the limit; (b)
//! the plugin with a fresh instance per message; (c) a cold load that compiles the component
//! from its bytes; (d) a load from the on-disk cache.
//!
//! Criterion measures each; then a summary measures the median of each again in the same run
//! and prints the ratios (b)/(a) and (c)/(d). Last, the same order through the Python and
//! JavaScript translators: a fresh instance per message, an instance reused, a cold compile
//! and a load from the cache, beside the Rust figures.
//!
//! Run: `cargo bench -p benches --bench translate`.
//!
//! It lives outside the host's package because its baseline compiles the guest SDK natively,
//! and with it wit-bindgen: the host's own tree stays free of the guest's bindings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::hint::black_box;

use criterion::Criterion;
use dragoman::plugin::{PluginConfig, Provenance, Runtime, VendorMessage};

#[path = "../tests/wasm_build.rs"]
mod wasm_build;

/// The seed translator's own source, compiled natively: the baseline.
#[path = "../plugins/acme-erp-v1/src/lib.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    reason = "only the translation is used here"
)]
mod acme_erp_v1;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ sits in the repository root")
        .to_owned()
}

/// Builds the seed translator for wasm32-wasip2 (a no-op when it is fresh) and returns its bytes.
fn plugin_bytes() -> Vec<u8> {
    let root = root();
    let target = wasm_build::target_dir(&root);
    wasm_build::build(&root.join("plugins/acme-erp-orders/Cargo.toml"), &target)
        .expect("the plugin builds");
    std::fs::read(wasm_build::artifact(&target, "acme-erp-orders")).expect("the plugin was built")
}

fn seed() -> Vec<u8> {
    std::fs::read(root().join("examples/seed-order.json")).expect("the seed order")
}

fn message(body: &[u8]) -> VendorMessage {
    VendorMessage {
        id: "bench".into(),
        content_type: Some("application/json".into()),
        headers: vec![],
        body: body.to_vec(),
    }
}

fn native(body: &[u8]) -> usize {
    let message = dragoman_guest::Message::new("bench", Some("application/json"), body.to_vec());
    let events = acme_erp_v1::translate_in(&message, "EUR").expect("the seed order translates");
    events.len()
}

fn main() {
    let wasm = plugin_bytes();
    let body = seed();
    let config = Arc::new(PluginConfig::new());
    let cache = tempfile::tempdir().expect("a temporary directory");
    let runtime = Runtime::builder()
        .cache_dir(cache.path())
        .build()
        .expect("the runtime builds");
    let plugin = runtime
        .load(&wasm, "acme-erp-orders")
        .expect("the plugin loads");
    let msg = message(&body);
    assert_eq!(native(&body), 1);
    assert_eq!(
        plugin
            .translate(&msg, config.clone())
            .expect("no fault")
            .expect("translates")
            .len(),
        1
    );

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("translate");
    group.bench_function("a_native", |b| b.iter(|| native(black_box(&body))));
    group.bench_function("b_fresh_instance", |b| {
        b.iter(|| plugin.translate(black_box(&msg), config.clone()))
    });
    group.finish();

    let mut group = criterion.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    let cold = Runtime::builder().build().expect("the runtime builds");
    group.bench_function("c_cold_compile", |b| {
        b.iter(|| cold.load(black_box(&wasm), "cold").expect("loads"))
    });
    group.bench_function("d_cached", |b| {
        b.iter(|| {
            let (plugin, provenance) = runtime
                .load_with_provenance(black_box(&wasm), "cached")
                .expect("loads");
            debug_assert_eq!(provenance, Provenance::Cached);
            plugin
        })
    });
    group.finish();
    criterion.final_summary();

    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let mut languages = Vec::new();
    // The summary: medians measured again, in this run, so that the ratios compare like with like.
    let a = median(50_000, || {
        black_box(native(&body));
    });
    let b = median(20_000, || {
        black_box(plugin.translate(&msg, config.clone()).ok());
    });
    let c = median(10, || {
        black_box(cold.load(&wasm, "cold").ok());
    });
    let d = median(200, || {
        black_box(runtime.load(&wasm, "cached").ok());
    });
    // Where (b)'s time goes: a fresh instance alone, and a call on an instance reused.
    let instantiate = median(20_000, || {
        black_box(plugin.session(config.clone()).ok());
    });
    let mut session = plugin.session(config.clone()).expect("instantiates");
    let reused = median(20_000, || {
        black_box(session.translate(&msg).ok());
    });
    println!();
    println!("seed order: {} bytes", body.len());
    println!(
        "    fresh instance alone         p50 {:>10.1} us",
        micros(instantiate)
    );
    println!(
        "    call on a reused instance    p50 {:>10.1} us",
        micros(reused)
    );
    println!(
        "(a) native translation           p50 {:>10.1} us",
        micros(a)
    );
    println!(
        "(b) plugin, fresh instance       p50 {:>10.1} us",
        micros(b)
    );
    println!(
        "(c) cold load, compiling         p50 {:>10.1} us",
        micros(c)
    );
    println!(
        "(d) load from the on-disk cache  p50 {:>10.1} us",
        micros(d)
    );
    println!("(b)/(a) = {:.1}", b.as_secs_f64() / a.as_secs_f64());
    println!("(c)/(d) = {:.1}", c.as_secs_f64() / d.as_secs_f64());
    with_use("Rust", &plugin, &msg, &config);

    languages.push(("Rust", b, reused, c, d));
    for (name, script, file) in [
        (
            "Python",
            "plugins/acme-erp-orders-py/build.sh",
            "acme_erp_orders_py.wasm",
        ),
        (
            "JavaScript",
            "plugins/acme-erp-orders-js/build.sh",
            "acme_erp_orders_js.wasm",
        ),
    ] {
        let root = root();
        let out = wasm_build::target_dir(&root)
            .join("wasm32-wasip2/release")
            .join(file);
        if let Err(e) = wasm_build::build_scripted(&root, script, None, &out) {
            println!("{name}: not built: {e}");
            continue;
        }
        let wasm = std::fs::read(&out).expect("the component was built");
        languages.push(interpreted(name, &wasm, &msg, &config));
    }
    // More components to compare, as `NAME=PATH,NAME=PATH` (a plugin of your own, or an empty
    // one to see what the toolchain costs before any logic).
    let extra = std::env::var("DRAGOMAN_BENCH_COMPONENTS").unwrap_or_default();
    for spec in extra.split(',').filter(|s| !s.is_empty()) {
        let Some((name, path)) = spec.split_once('=') else {
            continue;
        };
        let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        languages.push(interpreted(name, &wasm, &msg, &config));
    }
    println!();
    println!(
        "per message, p50      fresh instance   reused instance      cold compile    cached load"
    );
    for (name, fresh, reused, cold, cached) in languages {
        println!(
            "{name:12} {:>14.1} us {:>14.1} us {:>14.1} ms {:>11.1} ms",
            micros(fresh),
            micros(reused),
            micros(cold) / 1e3,
            micros(cached) / 1e3
        );
    }
}

/// One reused instance over 20,000 calls: the median time of the calls in each stretch of
/// ordinals, and the guest's linear memory after 1, 1,000 and 20,000 calls. A call that gets
/// slower with use, or memory that grows, means state that survives between messages.
fn with_use(
    name: &str,
    plugin: &dragoman::plugin::Plugin,
    msg: &VendorMessage,
    config: &Arc<PluginConfig>,
) {
    const CALLS: usize = 20_000;
    let mut session = plugin.session(config.clone()).expect("instantiates");
    let mut times = Vec::with_capacity(CALLS);
    let mut memory = Vec::new();
    println!();
    println!("{name}: one reused instance, {CALLS} calls of the seed order");
    for n in 1..=CALLS {
        let start = Instant::now();
        let result = session.translate(msg);
        times.push(start.elapsed());
        if let Err(fault) = result {
            println!("    call {n} faulted: {fault}");
            break;
        }
        if [1, 1_000, 10_000, CALLS].contains(&n) {
            memory.push((n, session.memory_bytes()));
        }
    }
    for (from, to) in [
        (1, 10),
        (11, 1_000),
        (1_001, 5_000),
        (5_001, 10_000),
        (10_001, 20_000),
    ] {
        if times.len() < to {
            break;
        }
        let mut stretch = times[from - 1..to].to_vec();
        stretch.sort_unstable();
        println!(
            "    calls {from:>6} to {to:>6}   p50 {:>8.1} us",
            micros(stretch[stretch.len() / 2])
        );
    }
    for (n, bytes) in memory {
        println!(
            "    guest memory after {n:>6} calls: {:>8} KiB",
            bytes / 1024
        );
    }
}

/// Fresh and reused per-message latency, cold compile and cached load of one component.
fn interpreted(
    name: &'static str,
    wasm: &[u8],
    msg: &VendorMessage,
    config: &Arc<PluginConfig>,
) -> (&'static str, Duration, Duration, Duration, Duration) {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let cold_runtime = Runtime::builder().build().expect("the runtime builds");
    let cold = median(3, || {
        black_box(cold_runtime.load(wasm, name).expect("loads"));
    });
    let runtime = Runtime::builder()
        .cache_dir(cache.path())
        .build()
        .expect("the runtime builds");
    let plugin = runtime.load(wasm, name).expect("loads");
    let cached = median(10, || {
        black_box(runtime.load(wasm, name).expect("loads"));
    });
    let fresh = median(300, || {
        black_box(
            plugin
                .translate(msg, config.clone())
                .expect("no fault")
                .expect("translates"),
        );
    });
    with_use(name, &plugin, msg, config);
    let instances = dragoman::plugin::Instances::new(plugin, config.clone(), u32::MAX);
    let reused = median(3000, || {
        black_box(
            instances
                .get()
                .expect("an instance")
                .translate(msg)
                .expect("no fault")
                .expect("translates"),
        );
    });
    (name, fresh, reused, cold, cached)
}

fn median(n: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..n.div_ceil(10) {
        f();
    }
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort_unstable();
    samples[n / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

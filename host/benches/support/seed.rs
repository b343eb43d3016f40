//! What the load benchmarks start from: the seed order, its translator built from
//! `plugins/acme-erp-orders`, and a multi-threaded runtime to drive the load.

use std::path::{Path, PathBuf};

use dragoman::config::Config;

/// The seed order and its translator.
pub(crate) struct Seed {
    pub(crate) translator: PathBuf,
    pub(crate) order: String,
}

/// Builds the seed translator and reads the seed order, from the repository at `root`.
pub(crate) fn seed(root: &Path) -> Seed {
    let target = crate::wasm_build::target_dir(root);
    crate::wasm_build::build(&root.join("plugins/acme-erp-orders/Cargo.toml"), &target)
        .expect("the seed translator builds");
    let translator = crate::wasm_build::artifact(&target, "acme-erp-orders");
    let order =
        std::fs::read_to_string(root.join("examples/seed-order.json")).expect("the seed order");
    Seed { translator, order }
}

/// A host on loopback with its data under `dir` and route `orders` running `translator`:
/// `top` goes before the routes (a store), `after` after the route's table (its own tables).
#[allow(
    dead_code,
    reason = "the benches with a route of their own build their config"
)]
pub(crate) fn orders_config(translator: &Path, dir: &Path, top: &str, after: &str) -> Config {
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n{top}\
         [routes.orders]\nplugin = {plugin:?}\n{after}",
        data = dir.join("data").display().to_string(),
        plugin = translator.display().to_string(),
    );
    Config::parse(&config, dir).expect("the bench config parses")
}

/// A multi-threaded runtime with every driver.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

//! What the load benchmarks start from: the seed order, its translator built from
//! `plugins/acme-erp-orders`, and a multi-threaded runtime to drive the load.

use std::path::{Path, PathBuf};

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

/// A multi-threaded runtime with every driver.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

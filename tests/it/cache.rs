use dragoman::plugin::{Provenance, Runtime};
use tests::wasm;

fn runtime(dir: &std::path::Path) -> Runtime {
    Runtime::builder().cache_dir(dir).build().unwrap()
}

fn cached_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn a_second_runtime_loads_from_the_cache_instead_of_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(wasm::ACME_ERP_ORDERS).unwrap();
    let (_, first) = runtime(dir.path())
        .load_with_provenance(&bytes, "orders")
        .unwrap();
    assert_eq!(first, Provenance::Compiled);
    let files = cached_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    let sha = dragoman::plugin::Runtime::builder()
        .build()
        .unwrap()
        .load(&bytes, "x")
        .unwrap()
        .id()
        .sha256
        .clone();
    assert!(
        name.starts_with(&sha),
        "the file is keyed by the wasm's sha256: {name}"
    );

    // A restart: a new runtime, same directory.
    let (plugin, second) = runtime(dir.path())
        .load_with_provenance(&bytes, "orders")
        .unwrap();
    assert_eq!(second, Provenance::Cached);
    let events = plugin
        .translate(&tests::message(tests::seed_order()), Default::default())
        .unwrap()
        .unwrap();
    assert_eq!(events.len(), 1);
}

#[test]
fn a_corrupt_cache_file_is_recompiled_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(wasm::COUNTER).unwrap();
    runtime(dir.path()).load(&bytes, "counter").unwrap();
    let file = cached_files(dir.path()).pop().unwrap();
    std::fs::write(&file, b"garbage").unwrap();
    let (plugin, provenance) = runtime(dir.path())
        .load_with_provenance(&bytes, "counter")
        .unwrap();
    assert_eq!(provenance, Provenance::Compiled);
    assert!(
        plugin
            .translate(&tests::message("{}"), Default::default())
            .unwrap()
            .is_ok()
    );
    let (_, provenance) = runtime(dir.path())
        .load_with_provenance(&bytes, "counter")
        .unwrap();
    assert_eq!(provenance, Provenance::Cached, "the replaced file is good");
}

#[test]
fn different_components_get_different_files() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    runtime.load_file(wasm::COUNTER).unwrap();
    runtime.load_file(wasm::PANIC).unwrap();
    runtime.load_file(wasm::COUNTER).unwrap();
    assert_eq!(cached_files(dir.path()).len(), 2);
}

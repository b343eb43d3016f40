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

/// A cache file damaged in its middle (where wasmtime's own header checks do not look) fails
/// its digest and is recompiled, instead of loading damaged machine code.
#[test]
fn issue_8_a_cache_file_damaged_in_its_middle_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(wasm::ACME_ERP_ORDERS).unwrap();
    runtime(dir.path()).load(&bytes, "orders").unwrap();
    let file = cached_files(dir.path()).pop().unwrap();
    let mut cached = std::fs::read(&file).unwrap();
    let middle = cached.len() / 2;
    cached[middle] ^= 0x01;
    std::fs::write(&file, &cached).unwrap();
    let (plugin, provenance) = runtime(dir.path())
        .load_with_provenance(&bytes, "orders")
        .unwrap();
    assert_eq!(provenance, Provenance::Compiled);
    assert_eq!(
        plugin
            .translate(&tests::message(tests::seed_order()), Default::default())
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    let (_, provenance) = runtime(dir.path())
        .load_with_provenance(&bytes, "orders")
        .unwrap();
    assert_eq!(provenance, Provenance::Cached, "the replaced file is good");
}

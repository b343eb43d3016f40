use super::*;
use crate::config::DEFAULT_KEEP_VERSIONS;

fn version(name: &str, v: &str, wasm: &[u8], at: i64) -> Version {
    Version {
        name: name.into(),
        version: v.into(),
        vendor_api_version: "test/v1".into(),
        sha256: crate::plugin::sha256_hex(wasm),
        size: wasm.len() as u64,
        received_at: Timestamp::from_second(at).unwrap(),
        folds: None,
    }
}

#[test]
fn a_version_is_kept_once_and_comes_back_as_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path(), DEFAULT_KEEP_VERSIONS).unwrap();
    let one = version("p", "1.0.0", b"one", 10);
    assert!(registry.keep(b"one", &one).unwrap(), "new");
    let later = Version {
        received_at: Timestamp::from_second(99).unwrap(),
        ..one.clone()
    };
    assert!(!registry.keep(b"one", &later).unwrap(), "kept before");
    assert_eq!(registry.component(&one.sha256).unwrap(), b"one");
    assert_eq!(
        registry.versions().unwrap(),
        vec![one.clone()],
        "the first receipt"
    );

    // A component changed on disk is refused, not served.
    std::fs::write(registry.component_path(&one.sha256), b"two").unwrap();
    let error = registry.component(&one.sha256).unwrap_err().to_string();
    assert!(error.contains("no longer matches"), "{error}");
}

#[test]
fn a_selector_finds_a_version_by_its_version_or_its_hash_and_says_when_it_is_ambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path(), DEFAULT_KEEP_VERSIONS).unwrap();
    let (a, b, c) = (
        version("p", "1.0.0", b"a", 1),
        version("p", "2.0.0", b"b", 2),
        version("p", "2.0.0", b"c", 3),
    );
    for (wasm, v) in [(&b"a"[..], &a), (b"b", &b), (b"c", &c)] {
        registry.keep(wasm, v).unwrap();
    }
    registry
        .keep(b"q", &version("q", "1.0.0", b"q", 4))
        .unwrap();
    assert_eq!(
        registry.find("p", &Selector::parse("1.0.0")).unwrap(),
        Found::One(a.clone())
    );
    assert_eq!(
        registry
            .find("p", &Selector::parse(&b.sha256[..12]))
            .unwrap(),
        Found::One(b.clone())
    );
    assert_eq!(
        registry
            .find("p", &Selector::parse(&c.sha256.to_uppercase()))
            .unwrap(),
        Found::One(c.clone())
    );
    assert_eq!(
        registry.find("p", &Selector::parse("2.0.0")).unwrap(),
        Found::Ambiguous(vec![b, c])
    );
    assert_eq!(
        registry.find("q", &Selector::parse("2.0.0")).unwrap(),
        Found::None
    );
    assert_eq!(Selector::parse("abc"), Selector::Version("abc".into()));
}

#[test]
fn activations_and_rollbacks_keep_a_history_that_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let registry = Registry::open(dir.path(), DEFAULT_KEEP_VERSIONS).unwrap();
        assert!(registry.previous("r").is_none(), "no state yet");
        registry.set_active("r", "v1", Some("v1")).unwrap();
        assert!(registry.previous("r").is_none(), "nothing before v1");
        registry.set_active("r", "v2", None).unwrap();
        registry.set_active("r", "v2", None).unwrap();
        let state = registry.set_active("r", "v3", None).unwrap();
        assert_eq!(
            state.previous,
            ["v1", "v2"],
            "the same version twice is one step"
        );
        assert_eq!(state.configured, "v1");
        assert_eq!(registry.previous("r").as_deref(), Some("v2"));
        registry.roll_back_all(&["r"]).unwrap();
        let back = registry.route("r").unwrap();
        assert_eq!((back.active.as_str(), back.previous.len()), ("v2", 1));
    }
    let registry = Registry::open(dir.path(), DEFAULT_KEEP_VERSIONS).unwrap();
    let state = registry.route("r").unwrap();
    assert_eq!(
        (state.active.as_str(), state.previous.as_slice()),
        ("v2", &["v1".to_owned()][..])
    );
    registry.roll_back_all(&["r"]).unwrap();
    assert_eq!(registry.route("r").unwrap().active, "v1");
    assert!(registry.previous("r").is_none());
}

#[test]
fn a_change_of_several_routes_is_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path(), DEFAULT_KEEP_VERSIONS).unwrap();
    registry.set_active("a", "v1", None).unwrap();
    registry.set_active("b", "v1", None).unwrap();
    registry.set_active_all(&["a", "b"], "v2").unwrap();
    // A registry whose file cannot be written changes nothing, on any route.
    let file = dir.path().join("routes.json");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(dir.path().join("routes.json")).unwrap();
    assert!(registry.roll_back_all(&["a", "b"]).is_err());
    for route in ["a", "b"] {
        assert_eq!(
            registry.route(route).unwrap().active,
            "v2",
            "{route} unchanged"
        );
    }
    std::fs::remove_dir(&file).unwrap();
    registry.roll_back_all(&["a", "b"]).unwrap();
    let reopened = Registry::open(dir.path(), DEFAULT_KEEP_VERSIONS).unwrap();
    for route in ["a", "b"] {
        assert_eq!(reopened.route(route).unwrap().active, "v1", "{route} back");
    }
}

#[test]
fn the_history_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path(), DEFAULT_KEEP_VERSIONS).unwrap();
    for n in 0..DEFAULT_KEEP_VERSIONS + 10 {
        registry.set_active("r", &format!("v{n}"), None).unwrap();
    }
    let state = registry.route("r").unwrap();
    assert_eq!(state.previous.len(), DEFAULT_KEEP_VERSIONS);
    assert_eq!(state.previous[0], "v9", "the oldest went first");
}

#[test]
fn a_damaged_routes_file_is_an_error_not_an_empty_registry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("routes.json"), b"{not json").unwrap();
    let error = Registry::open(dir.path(), DEFAULT_KEEP_VERSIONS).unwrap_err();
    assert!(matches!(error, RegistryError::Damaged { .. }), "{error}");
}

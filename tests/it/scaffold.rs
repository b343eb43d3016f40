//! `dragoman plugin new` in each language, then the steps docs/plugins/*.md give: the
//! generated build script (which embeds the fixtures in the component), then
//! `dragoman plugin test` on the component alone.

use std::process::Command;

fn scaffold_builds_and_passes(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-vendor");
    let created = Command::new(tests::dragoman_bin())
        .args(["plugin", "new", "--lang", lang, &name, "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let folder = dir.path().join(&name);

    let mut build = Command::new(folder.join("build.sh"));
    if lang == "rust" {
        // Share the compiled dependencies of the other Rust guests.
        let target = std::path::Path::new(tests::wasm::ACME_ERP_ORDERS)
            .ancestors()
            .nth(3)
            .unwrap()
            .to_owned();
        build.env("CARGO_TARGET_DIR", target);
    }
    let built = build.output().unwrap();
    assert!(
        built.status.success(),
        "{lang} build: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    // The build embedded the fixtures: the component alone is tested.
    let tested = Command::new(tests::dragoman_bin())
        .args(["plugin", "test"])
        .arg(folder.join(format!("{name}.wasm")))
        .arg("--cache-dir")
        .arg(tests::shared_cache().join("scaffold"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "{stdout}");
    assert!(stdout.ends_with("2 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn a_rust_scaffold_builds_and_passes_its_fixtures() {
    scaffold_builds_and_passes("rust");
}

#[test]
fn a_python_scaffold_builds_and_passes_its_fixtures() {
    scaffold_builds_and_passes("python");
}

#[test]
fn a_javascript_scaffold_builds_and_passes_its_fixtures() {
    scaffold_builds_and_passes("js");
}

#[test]
fn a_bad_name_or_an_existing_folder_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    for (name, expected) in [("Bad_Name", "kebab-case"), ("ok-name", "exists already")] {
        if expected == "exists already" {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let output = Command::new(tests::dragoman_bin())
            .args(["plugin", "new", "--lang", "rust", name, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected) && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
}

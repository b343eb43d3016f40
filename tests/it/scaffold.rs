//! `dragoman plugin new` in each language, then the steps docs/plugins/*.md give: the
//! generated build script (which embeds the fixtures in the component), then `dragoman plugin
//! test` on the folder. Each scaffold also passes the SDKs' shared conformance fixtures
//! (`guest-sdk/conformance`), and the traps of plugin authoring are closed: a syntax error
//! fails the build naming its file and line and leaves no component to test, and a component
//! older than its sources is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The conformance fixtures every SDK path must pass.
fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/conformance")
}

/// How many fixtures a directory holds.
fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".expected.json")
        })
        .count()
}

/// The folder's build script, with the Rust guests' target directory shared.
fn build(folder: &Path) -> Output {
    let mut build = Command::new(folder.join("build.sh"));
    if folder.join("Cargo.toml").exists() {
        // Share the compiled dependencies of the other Rust guests.
        build.env("CARGO_TARGET_DIR", tests::dev::rust_target_dir());
    }
    build.output().unwrap()
}

fn plugin_test(folder: &Path, fixtures: Option<&Path>) -> Output {
    let mut command = Command::new(tests::dragoman_bin());
    command.args(["plugin", "test"]).arg(folder);
    if let Some(dir) = fixtures {
        command.arg(dir);
    }
    command
        .arg("--cache-dir")
        .arg(tests::shared_cache().join("scaffold"))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds a fresh scaffold and runs its own fixtures and the conformance set; then saves a
/// source again (stale component refused), then breaks it with the line `broken`.
fn scaffold_builds_passes_and_fails_safe(lang: &str, source: &str, broken: &str) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-vendor");
    let folder = tests::dev::new_plugin(lang, &name, dir.path());
    for file in ["README.md", ".gitignore"] {
        assert!(folder.join(file).is_file(), "{lang}: no {file}");
    }
    let ignored = std::fs::read_to_string(folder.join(".gitignore")).unwrap();
    assert!(ignored.contains("*.wasm"), "{ignored}");

    let built = build(&folder);
    assert!(
        built.status.success(),
        "{lang} build: {}",
        text(&built.stderr)
    );

    // The folder: its fixtures, through the component the build made.
    let tested = plugin_test(&folder, None);
    let stdout = text(&tested.stdout);
    assert!(tested.status.success(), "{stdout}{}", text(&tested.stderr));
    assert!(stdout.ends_with("2 passed, 0 failed\n"), "{stdout}");
    // The component alone: the fixtures the build embedded.
    let alone = plugin_test(&folder.join(format!("{name}.wasm")), None);
    assert!(text(&alone.stdout).ends_with("2 passed, 0 failed\n"));
    // The shared conformance set: the same codes as in every other language.
    let conformed = plugin_test(&folder, Some(&conformance()));
    let stdout = text(&conformed.stdout);
    let expected = format!("{} passed, 0 failed\n", count(&conformance()));
    assert!(
        conformed.status.success() && stdout.ends_with(&expected),
        "{lang} conformance:\n{stdout}{}",
        text(&conformed.stderr)
    );

    // A source saved after the build: the component is stale and is not tested.
    let path = folder.join(source);
    let original = std::fs::read_to_string(&path).unwrap();
    std::thread::sleep(Duration::from_millis(20)); // a later modification time than the build
    std::fs::write(&path, &original).unwrap();
    let stale = plugin_test(&folder, None);
    let stderr = text(&stale.stderr);
    assert_eq!(stale.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is older than its source") && stderr.contains(source),
        "{stderr}"
    );

    // A syntax error on a new last line: the build fails naming the file and that line, and
    // leaves nothing to test.
    let line = original.lines().count() + 1;
    std::fs::write(&path, format!("{}\n{broken}\n", original.trim_end())).unwrap();
    let failed = build(&folder);
    let stderr = text(&failed.stderr) + &text(&failed.stdout);
    assert!(!failed.status.success(), "{lang}: a broken build succeeded");
    let place = format!("{source}:{line}");
    assert!(stderr.contains(&place), "{lang}: {place} not in\n{stderr}");
    let after = plugin_test(&folder, None);
    let stderr = text(&after.stderr);
    assert_eq!(after.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no component"), "{stderr}");
}

#[test]
fn issue_12_a_rust_scaffold_builds_conforms_and_fails_safe() {
    scaffold_builds_passes_and_fails_safe("rust", "src/lib.rs", "fn (");
}

#[test]
fn issue_12_a_python_scaffold_builds_conforms_and_fails_safe() {
    // `py` is the short name.
    scaffold_builds_passes_and_fails_safe("py", "app.py", "def (");
}

#[test]
fn issue_12_a_javascript_scaffold_builds_conforms_and_fails_safe() {
    scaffold_builds_passes_and_fails_safe("js", "app.js", "function (");
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

#[test]
fn issue_12_the_help_lists_the_languages_and_the_rust_scaffold_finds_its_sdk_by_a_relative_path() {
    let help = Command::new(tests::dragoman_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = text(&help.stdout);
    assert!(
        help.contains("rust|python|js") && help.contains("plugin dev"),
        "{help}"
    );
    let dir = tempfile::tempdir().unwrap();
    let folder = tests::dev::new_plugin("rs", "rel-sdk", dir.path());
    let manifest = std::fs::read_to_string(folder.join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.starts_with("dragoman-guest"))
        .unwrap();
    assert!(
        line.contains(r#"version = "0.1.0""#) && line.contains(r#"path = "../"#),
        "{line}"
    );
}

#[test]
fn issue_12_plugin_dev_rebuilds_and_reruns_after_a_save_printing_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let folder = tests::dev::new_plugin("rust", "dev-loop", dir.path());
    let dev = tests::dev::DevLoop::spawn(&folder);
    let limit = Duration::from_secs(300);
    let first = dev.until("2 passed, 0 failed", limit);
    assert!(first.iter().any(|l| l == "ok   missing-id"), "{first:#?}");

    // A source saved: rebuilt, and only the fixture whose outcome changed is shown.
    let lib = folder.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        source.replace("\"example.received.v1\"", "\"example.accepted.v1\""),
    )
    .unwrap();
    let second = dev.until("1 passed, 1 failed", limit);
    assert!(second.iter().any(|l| l == "building…"), "{second:#?}");
    assert!(second.iter().any(|l| l == "FAIL ok"), "{second:#?}");
    assert!(
        second
            .iter()
            .any(|l| l.contains("+") && l.contains("example.accepted.v1")),
        "the diff shows the new type: {second:#?}"
    );
    assert!(
        !second.iter().any(|l| l.contains("missing-id")),
        "an unchanged outcome is not printed again: {second:#?}"
    );
    let summary = second.last().unwrap();
    assert!(
        tests::dev::edit_to_result(summary).is_some_and(|s| s > 0.0),
        "{summary}"
    );

    // A fixture saved: rerun without a build.
    let expected = folder.join("fixtures/ok.expected.json");
    let fixture = std::fs::read_to_string(&expected).unwrap();
    std::fs::write(
        &expected,
        fixture.replace("example.received.v1", "example.accepted.v1"),
    )
    .unwrap();
    let third = dev.until("2 passed, 0 failed", limit);
    assert!(third.iter().any(|l| l == "ok   ok"), "{third:#?}");
    assert!(!third.iter().any(|l| l == "building…"), "{third:#?}");
    assert!(
        third.last().unwrap().ends_with("(fixtures only)"),
        "{third:#?}"
    );

    // A syntax error: the build's own message, with file and line; the loop goes on.
    std::fs::write(&lib, source.replacen("struct", "struct (", 1)).unwrap();
    let fourth = dev.until("build failed", limit);
    assert!(
        fourth.iter().any(|l| l.contains("src/lib.rs:")),
        "{fourth:#?}"
    );
}

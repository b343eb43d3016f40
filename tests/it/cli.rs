//! The `dragoman` binary, run as a user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use tests::wasm;

fn dragoman(args: &[&str], stdin: &[u8]) -> Output {
    let cache = tests::shared_cache().join("cli");
    let mut child = Command::new(tests::dragoman_bin())
        .args(args)
        .arg("--cache-dir")
        .arg(&cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dragoman starts");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn bare(args: &[&str]) -> Output {
    Command::new(tests::dragoman_bin())
        .args(args)
        .output()
        .expect("dragoman starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One line on stderr, no panic, no backtrace.
fn one_clear_line(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.starts_with("dragoman: "), "{stderr:?}");
    // The host itself never panics; a guest's panic message may be quoted.
    assert!(
        !stderr.contains("thread 'main'") && !stderr.contains("stack backtrace"),
        "{stderr:?}"
    );
    stderr
}

#[test]
fn plugin_test_passes_both_plugins() {
    for (plugin, fixtures) in [
        (wasm::ACME_ERP_ORDERS, wasm::ACME_ERP_ORDERS_FIXTURES),
        (wasm::ACME_ERP_ORDERS_V2, wasm::ACME_ERP_ORDERS_V2_FIXTURES),
    ] {
        let output = dragoman(&["plugin", "test", plugin, fixtures], b"");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            text(&output.stderr)
        );
        let summary = stdout.lines().last().unwrap();
        assert!(summary.ends_with("passed, 0 failed"), "{summary}");
        assert!(!stdout.contains("FAIL"), "{stdout}");
    }
}

#[test]
fn plugin_test_fails_with_a_diff_on_a_wrong_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(wasm::ACME_ERP_ORDERS_FIXTURES);
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let expected = std::fs::read_to_string(source.join("closed.expected.json")).unwrap();
    std::fs::write(
        dir.path().join("closed.expected.json"),
        expected.replace("\"closed\"", "\"open\""),
    )
    .unwrap();

    let output = dragoman(
        &[
            "plugin",
            "test",
            wasm::ACME_ERP_ORDERS,
            dir.path().to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("FAIL closed"), "{stdout}");
    assert!(
        stdout.contains("-          \"status\": \"open\"")
            || stdout
                .lines()
                .any(|l| l.trim_start().starts_with("-") && l.contains("\"open\"")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("+") && l.contains("\"closed\"")),
        "{stdout}"
    );
    assert!(
        stdout.lines().last().unwrap().ends_with("passed, 1 failed"),
        "{stdout}"
    );
}

#[test]
fn plugin_check_prints_metadata_and_directions() {
    let output = dragoman(&["plugin", "check", wasm::ACME_ERP_ORDERS_V2], b"");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for expected in [
        "acme-erp-orders",
        "2.0.0",
        "acme-erp/v2",
        "dragoman:translator@0.1.0",
        "directions:         inbound",
    ] {
        assert!(stdout.contains(expected), "{expected} in {stdout}");
    }
}

#[test]
fn plugin_check_lists_both_directions() {
    let output = dragoman(&["plugin", "check", wasm::BOTH_DIRECTIONS], b"");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("directions:         inbound, outbound"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn plugin_check_refuses_the_wrong_world_in_one_line() {
    let output = dragoman(&["plugin", "check", wasm::WRONG_WORLD], b"");
    assert_eq!(output.status.code(), Some(2));
    let line = one_clear_line(&output);
    assert!(
        line.contains("does not implement dragoman:translator@0.1.0"),
        "{line}"
    );
}

#[test]
fn plugin_translate_prints_the_events() {
    let output = dragoman(
        &["plugin", "translate", wasm::ACME_ERP_ORDERS],
        tests::seed_order().as_bytes(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["idempotency_key"], "order-created-SEED-2026-000417");
    let event = &out["events"][0];
    assert_eq!(event["type"], "order.created.v1");
    assert_eq!(
        event["data"]["items"][2]["unit_price"]["amount_minor"].to_string(),
        "8912",
        "89.125 rounds half to even"
    );
}

#[test]
fn plugin_translate_reports_a_refusal_and_a_fault_with_exit_1() {
    let output = dragoman(
        &[
            "plugin",
            "translate",
            wasm::ACME_ERP_ORDERS,
            "--config",
            "currency=JPY",
        ],
        br#"{"ord_id": "1", "ord_status": "?", "line_items": []}"#,
    );
    assert_eq!(output.status.code(), Some(1));
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["error"]["code"], "unknown-status");

    let output = dragoman(&["plugin", "translate", wasm::PANIC], b"{}");
    assert_eq!(output.status.code(), Some(1));
    let line = one_clear_line(&output);
    assert!(
        line.contains("panic@0.0.1") && line.contains("boom"),
        "{line}"
    );
}

#[test]
fn bad_arguments_and_files_give_one_clear_line() {
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"not wasm at all").unwrap();
    let junk = junk.path().to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["plugin", "frobnicate"], "unrecognized subcommand"),
        (vec!["plugin", "check"], "required"),
        (
            vec!["plugin", "check", "/no/such/file.wasm"],
            "cannot read plugin",
        ),
        (
            vec!["plugin", "check", junk],
            "not a valid WebAssembly component",
        ),
        (
            vec!["plugin", "test", wasm::ACME_ERP_ORDERS, "/no/such/dir"],
            "cannot read",
        ),
        (
            vec![
                "plugin",
                "translate",
                wasm::ACME_ERP_ORDERS,
                "--config",
                "novalue",
            ],
            "is not KEY=VALUE",
        ),
        (
            vec!["plugin", "check", wasm::COUNTER, "--deadline-ms", "soon"],
            "invalid value",
        ),
    ];
    for (args, expected) in cases {
        let output = bare(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let line = one_clear_line(&output);
        assert!(line.contains(expected), "{args:?}: {line}");
    }
}

#[test]
fn completions_print_for_four_shells() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let output = bare(&["completions", shell]);
        assert_eq!(output.status.code(), Some(0), "{shell}: {output:?}");
        let script = text(&output.stdout);
        // Each names the subcommands it completes.
        for word in ["serve", "audit", "completions"] {
            assert!(script.contains(word), "{shell}: no `{word}` in the script");
        }
    }
    let unknown = bare(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(one_clear_line(&unknown).contains("tcsh"));
}

/// `config check` reads the file as `serve` does: a good one passes with a summary, a bad one
/// names the key and its line (exit 2), and a URL given as `{ env = "NAME" }` is read from the
/// environment.
#[test]
fn config_check_validates_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\n\n[sinks.hook]\ntype = \"http\"\n\
         url = {{ env = \"CHECK_HOOK_URL\" }}\n\n[routes.orders]\nplugin = \"{}\"\nsinks = [\"hook\"]\n",
        wasm::ACME_ERP_ORDERS
    );
    let path = dir.path().join("good.toml");
    std::fs::write(&path, &good).unwrap();
    let path = path.to_str().unwrap();
    let check = |env: Option<&str>| {
        let mut command = Command::new(tests::dragoman_bin());
        command.args(["config", "check", path]);
        match env {
            Some(url) => command.env("CHECK_HOOK_URL", url),
            None => command.env_remove("CHECK_HOOK_URL"),
        };
        command.output().expect("dragoman starts")
    };
    let passed = check(Some("http://127.0.0.1:9/events"));
    assert_eq!(passed.status.code(), Some(0), "{passed:?}");
    let summary = text(&passed.stdout);
    assert!(summary.contains("ok (1 routes, 1 sinks"), "{summary}");
    // Nothing was started or opened: no data dir.
    assert!(!dir.path().join("d").exists());

    let unset = check(None);
    assert_eq!(unset.status.code(), Some(2));
    let line = one_clear_line(&unset);
    assert!(
        line.contains("sinks.hook.url") && line.contains("CHECK_HOOK_URL"),
        "{line}"
    );
    let not_a_url = check(Some("ftp://127.0.0.1/x"));
    assert_eq!(not_a_url.status.code(), Some(2));
    assert!(one_clear_line(&not_a_url).contains("sinks.hook.url"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        good.replace("data_dir = \"d\"\n", "data_dir = \"d\"\nretries = \"x\"\n"),
    )
    .unwrap();
    let output = bare(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_clear_line(&output);
    assert!(
        line.contains("retries") && line.contains("line 3"),
        "{line}"
    );

    let missing_plugin = dir.path().join("missing.toml");
    std::fs::write(
        &missing_plugin,
        good.replace(wasm::ACME_ERP_ORDERS, "/no/such/plugin.wasm"),
    )
    .unwrap();
    let output = Command::new(tests::dragoman_bin())
        .args(["config", "check", missing_plugin.to_str().unwrap()])
        .env("CHECK_HOOK_URL", "http://127.0.0.1:9/events")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(one_clear_line(&output).contains("routes.orders.plugin"));
}

/// A server that does not answer is exit 3, not "bad arguments" (2).
#[test]
fn an_unreachable_server_exits_3() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let output = bare(&["dlq", "list", "--server", &server]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(one_clear_line(&output).contains("cannot reach"));
    let output = bare(&["audit", "verify", "--server", &server]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    // A URL that is not one stays bad input.
    let output = bare(&["dlq", "list", "--server", "not a url"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

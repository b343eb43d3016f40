//! Hot swap (issue 11): versions received, checked, kept and activated on a running
//! `dragoman serve` while messages flow; refused candidates; rollback; a restart serving
//! what was active.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tests::net::{self, Webhook, wait_until};
use tests::swap::{Swapping, one_swap, order, order_v2, packed, sha256};
use tests::wasm;

#[test]
fn issue_11_v1_v2_v1_ten_times_under_load_by_upload_cli_activation_and_rollback() {
    let webhook = Webhook::start();
    let rig = Swapping::start(&webhook, false);
    let (v1, v2) = (sha256(&rig.v1), sha256(&rig.v2));
    assert_eq!(rig.active(), v1, "the configured file serves first");

    // Four clients post distinct v1-shaped orders until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let url = rig.url("/v1/routes/orders/messages");
    let mut clients = Vec::new();
    for c in 0..4 {
        let (client, url, stop, accepted) = (
            rig.http.client(),
            url.clone(),
            stop.clone(),
            accepted.clone(),
        );
        clients.push(rig.http.runtime().spawn(async move {
            let mut statuses = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 5_000 {
                n += 1;
                let body = order(&format!("SW-{c}-{n}")).into_bytes();
                let headers = [("content-type", "application/json")];
                let reply = net::send(&client, "POST", &url, &headers, body)
                    .await
                    .unwrap();
                if reply.status == 202 {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
                statuses.push(reply.status);
            }
            statuses
        }));
    }

    // Ten swaps, each a different way in: an upload of a new version, `dragoman plugin push`
    // of one the registry keeps, a file dropped into the watched directory, activation by
    // version, by hash, and rollback.
    let mut swapped = Vec::new();
    for i in 0..10 {
        let seen = accepted.load(Ordering::SeqCst);
        wait_until(
            Duration::from_secs(30),
            "messages flow between swaps",
            || accepted.load(Ordering::SeqCst) >= seen + 20,
        );
        let expected = if i % 2 == 0 { (&v1, &v2) } else { (&v2, &v1) };
        let swap = match i {
            0 => one_swap(&rig.upload("acme-erp-orders", &rig.v2)),
            1 => {
                let out = rig.cli(&["plugin", "push", rig.v1.to_str().unwrap()]);
                assert!(out.status.success(), "{out:?}");
                let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
                let swap = &answer["swaps"][0];
                let sha = |v: &Value| v["sha256"].as_str().unwrap().to_owned();
                (sha(&swap["from"]), sha(&swap["to"]))
            }
            3 | 7 => {
                rig.drop_file(&rig.v1, &format!("v1-{i}.wasm"));
                rig.wait_serving(&v1);
                (v2.clone(), v1.clone())
            }
            2 | 6 => one_swap(&rig.call(
                "POST",
                "/v1/plugins/acme-erp-orders/activate",
                br#"{"version": "2.0.0"}"#,
            )),
            4 | 8 => {
                let body = json!({"sha256": &v2[..16]}).to_string();
                one_swap(&rig.call(
                    "POST",
                    "/v1/plugins/acme-erp-orders/activate",
                    body.as_bytes(),
                ))
            }
            _ => one_swap(&rig.call("POST", "/v1/plugins/acme-erp-orders/rollback", b"")),
        };
        assert_eq!((&swap.0, &swap.1), expected, "swap {i}");
        swapped.push(swap);
    }
    let seen = accepted.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(30),
        "messages flow after the last swap",
        || accepted.load(Ordering::SeqCst) >= seen + 20,
    );
    stop.store(true, Ordering::SeqCst);
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| rig.http.runtime().block_on(c).unwrap())
        .collect();
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for s in &statuses {
        *counts.entry(*s).or_default() += 1;
    }
    assert_eq!(counts.keys().collect::<Vec<_>>(), [&202], "{counts:?}");

    // Nothing lost; each message's events come from one version, as their provenance says.
    wait_until(
        Duration::from_secs(60),
        "every event reaches the sink",
        || webhook.counts().len() >= statuses.len(),
    );
    let mut by_message: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for event in webhook.received() {
        assert!(
            event.plugin_sha256 == v1 || event.plugin_sha256 == v2,
            "{}",
            event.plugin_sha256
        );
        let message = event.headers["ce-correlationid"]
            .to_str()
            .unwrap()
            .to_owned();
        by_message
            .entry(message)
            .or_default()
            .insert(event.plugin_sha256);
    }
    assert_eq!(by_message.len(), statuses.len(), "one message per request");
    assert!(by_message.values().all(|v| v.len() == 1));
    let versions: BTreeSet<&String> = by_message.values().flatten().collect();
    assert_eq!(versions.len(), 2, "both versions served messages");

    // Every activation is on the route's audit stream, with both hashes and how it came.
    let history = rig.history("route:orders");
    assert_eq!(history.len(), 10);
    let hows: Vec<&str> = history
        .iter()
        .map(|e| e["data"]["how"].as_str().unwrap())
        .collect();
    assert_eq!(
        hows,
        [
            "received", "received", "by_hand", "received", "by_hand", "rollback", "by_hand",
            "received", "by_hand", "rollback"
        ]
    );
    for (event, (from, to)) in history.iter().zip(&swapped) {
        assert_eq!(event["kind"], "plugin_activated");
        assert_eq!(
            (&event["data"]["from_sha256"], &event["data"]["to_sha256"]),
            (&json!(from), &json!(to))
        );
    }
    // The registry received v2 once (new) and v1 again three times (kept since the start).
    let received: Vec<(Value, Value)> = rig
        .history("plugin:acme-erp-orders")
        .iter()
        .filter(|e| e["kind"] == "plugin_received")
        .map(|e| (e["data"]["sha256"].clone(), e["data"]["new"].clone()))
        .collect();
    let again = (json!(v1), json!(false));
    assert_eq!(
        received,
        [
            (json!(v2), json!(true)),
            again.clone(),
            again.clone(),
            again
        ]
    );
}

#[test]
fn issue_11_a_candidate_that_fails_a_check_is_refused_with_the_reason_and_v1_keeps_serving() {
    let webhook = Webhook::start();
    let rig = Swapping::start(&webhook, false);
    let v1 = sha256(&rig.v1);
    let dir = rig.dir.path();
    let refused = |reply: net::Reply, code: &str| {
        assert_eq!(reply.status, 422, "{}", reply.json());
        let problem = reply.json();
        assert_eq!(problem["code"], code, "{problem}");
        problem["detail"].as_str().unwrap().to_owned()
    };

    // Bytes that are not a component.
    let junk = dir.join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    let detail = refused(rig.upload("acme-erp-orders", &junk), "not-a-component");
    assert!(
        detail.contains("not a valid WebAssembly component"),
        "{detail}"
    );
    // A component of another world.
    let detail = refused(
        rig.upload("acme-erp-orders", wasm::WRONG_WORLD.as_ref()),
        "wrong-world",
    );
    assert!(detail.contains("dragoman:translator"), "{detail}");
    // v1 carrying v2's fixtures: it fails one, named with its diff.
    let wrong = packed(
        dir,
        wasm::ACME_ERP_ORDERS,
        wasm::ACME_ERP_ORDERS_V2_FIXTURES,
        "v1-wrong-fixtures.wasm",
    );
    let detail = refused(rig.upload("acme-erp-orders", &wrong), "fixture-failed");
    assert!(detail.starts_with("fixture `"), "{detail}");
    assert!(detail.contains("--- expected"), "{detail}");
    // v2 uploaded as another plugin.
    let detail = refused(rig.upload("acme-erp-invoices", &rig.v2), "other-plugin");
    assert!(detail.contains("`acme-erp-orders`"), "{detail}");
    // By the CLI too: exit 1, the problem printed.
    let out = rig.cli(&["plugin", "push", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("fixture-failed"));

    // Nothing changed: v1 serves, kept alone, and a message now is translated by it.
    assert_eq!(rig.active(), v1);
    let reply = rig.call("GET", "/v1/plugins/acme-erp-orders", b"");
    let versions = reply.json()["acme-erp-orders"]["versions"].clone();
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    assert_eq!(rig.translated_by(&webhook, "AFTER-1"), v1);

    // Each refusal is on the plugin's audit stream with its code, the candidate's hash and
    // the active one's.
    let refusals: Vec<Value> = rig
        .history("plugin:acme-erp-orders")
        .into_iter()
        .filter(|e| e["kind"] == "plugin_refused")
        .collect();
    let codes: Vec<&str> = refusals
        .iter()
        .map(|e| e["data"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "not-a-component",
            "wrong-world",
            "fixture-failed",
            "fixture-failed"
        ]
    );
    assert_eq!(refusals[2]["data"]["sha256"], json!(sha256(&wrong)));
    assert_eq!(refusals[2]["data"]["active"], json!([v1]));
    let other = rig.history("plugin:acme-erp-invoices");
    assert_eq!(other[0]["data"]["code"], "other-plugin");
}

#[test]
fn issue_11_a_restart_after_a_swap_serves_the_swapped_version_from_the_cache() {
    let webhook = Webhook::start();
    let mut rig = Swapping::start(&webhook, true);
    let (v1, v2) = (sha256(&rig.v1), sha256(&rig.v2));
    one_swap(&rig.upload("acme-erp-orders", &rig.v2));
    assert_eq!(rig.route()["loaded"], "compiled", "a cache of its own");

    assert!(rig.server.stop().success());
    rig.server.restart();
    let route = rig.route();
    assert_eq!(route["active"]["sha256"], json!(v2), "{route}");
    assert_eq!(route["loaded"], "cached", "not compiled again: {route}");
    assert_eq!(route["previous"], json!([v1]));
    assert_eq!(rig.translated_by(&webhook, "RESTARTED-1"), v2);

    // Rollback goes back to v1, and then there is nothing before it.
    let out = rig.cli(&["plugin", "rollback", "acme-erp-orders"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rig.active(), v1);
    let reply = rig.call("POST", "/v1/plugins/acme-erp-orders/rollback", b"");
    assert_eq!(reply.status, 409, "{}", reply.json());
    assert_eq!(
        reply.json()["type"],
        "urn:dragoman:problem:nothing-to-roll-back"
    );

    // A config that names another file wins over the registry at the next start.
    rig.server.stop();
    let config = std::fs::read_to_string(rig.dir.path().join("dragoman.toml")).unwrap();
    std::fs::write(
        rig.dir.path().join("dragoman.toml"),
        config.replace("v1.wasm", "v2.wasm"),
    )
    .unwrap();
    rig.server.restart();
    assert_eq!(rig.active(), v2);
}

#[test]
fn issue_11_a_file_in_the_watched_directory_is_taken_once_and_only_when_whole() {
    let webhook = Webhook::start();
    let rig = Swapping::start(&webhook, false);
    let (v1, v2) = (sha256(&rig.v1), sha256(&rig.v2));
    let drop = rig.dir.path().join("drop");
    let incomplete = "dragoman_plugin_files_total{outcome=\"incomplete\"}";

    // Half of v2, as a slow copy leaves it: left alone, not refused.
    let bytes = std::fs::read(&rig.v2).unwrap();
    std::fs::write(drop.join("v2.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    wait_until(Duration::from_secs(30), "the half file is seen", || {
        rig.counter(incomplete) >= 1
    });
    assert_eq!(rig.active(), v1);
    // The rest arrives: now it is taken, and serves.
    std::fs::write(drop.join("v2.wasm"), &bytes).unwrap();
    rig.wait_serving(&v2);
    assert_eq!(rig.translated_by(&webhook, "DROPPED-1"), v2);

    // A file that is no component at all is refused, and says why.
    std::fs::write(drop.join("notes.wasm"), b"these are not the bytes you want").unwrap();
    wait_until(Duration::from_secs(30), "the junk is refused", || {
        rig.history("plugin:unknown")
            .iter()
            .any(|e| e["data"]["code"] == "not-a-component")
    });
    // Touching the taken file again with the same bytes takes nothing.
    std::fs::write(drop.join("v2.wasm"), &bytes).unwrap();
    wait_until(Duration::from_secs(30), "the rewrite is seen", || {
        rig.counter("dragoman_plugin_files_total{outcome=\"unchanged\"}") >= 1
    });
    assert_eq!(rig.active(), v2);

    let events = rig.history("plugin:acme-erp-orders");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["plugin_received"],
        "v2 received once, nothing refused"
    );
    assert_eq!(rig.history("route:orders").len(), 1);
}

/// A link to `/dev/zero` and a FIFO named `*.wasm` are refused by their type, logged once,
/// and neither swells the host nor stops the watcher: a valid file dropped after them is
/// taken, also after a restart with them in place.
#[test]
fn issue_25_the_watched_directory_reads_regular_files_only_and_bounded() {
    let webhook = Webhook::start();
    let mut rig = Swapping::start(&webhook, false);
    let drop = rig.dir.path().join("drop");
    let refused = "dragoman_plugin_files_total{outcome=\"refused\"}";
    wait_until(Duration::from_secs(30), "the watched directory", || {
        drop.is_dir()
    });
    std::os::unix::fs::symlink("/dev/zero", drop.join("zero.wasm")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(drop.join("x.wasm"))
        .status()
        .unwrap();
    assert!(made.success());
    wait_until(Duration::from_secs(30), "both refused", || {
        rig.counter(refused) >= 2
    });
    rig.drop_file(&rig.v2.clone(), "v2.wasm");
    rig.wait_serving(&sha256(&rig.v2));
    let resident = rig.server.resident_bytes();
    assert!(resident < 300 << 20, "{} MiB resident", resident >> 20);
    assert_eq!(rig.counter(refused), 2, "each refusal counted once");
    let log = rig.server.log();
    let refusals: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("plugin file refused"))
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:#?}");
    assert!(refusals.iter().any(|l| l.contains("a character device")));
    assert!(refusals.iter().any(|l| l.contains("a FIFO")));

    // With both there at start: the host starts, refuses them once more, and takes the next
    // file.
    rig.server.stop();
    rig.server.restart();
    wait_until(Duration::from_secs(30), "both refused at start", || {
        rig.counter(refused) >= 2
    });
    rig.drop_file(&rig.v1.clone(), "v1.wasm");
    rig.wait_serving(&sha256(&rig.v1));
    let resident = rig.server.resident_bytes();
    assert!(resident < 300 << 20, "{} MiB resident", resident >> 20);
}

/// A rollback over two routes that serve one plugin, one of which cannot go back (it takes
/// commands, and the version before lacks the outbound direction), changes neither route and
/// says which and why.
#[test]
fn issue_25_a_rollback_that_one_route_cannot_take_changes_no_route() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = tests::swap::packed_versions(dir.path());
    let routes = |a: &Path, commands: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{{data_dir}}\"\n[sandbox]\ncache_dir = \"{{cache_dir}}\"\n\
             {sinks}\n[vendors.acme]\nbase_url = \"http://127.0.0.1:9\"\n\
             [routes.a-orders]\nplugin = \"{a}\"\nsinks = [\"hook\"]\n\
             [routes.b-cmds]\nplugin = \"{v1}\"\nsinks = [\"hook\"]\n{commands}",
            sinks = webhook.sink_table("hook"),
            a = a.display(),
            v1 = v1.display(),
        )
    };
    let mut server = net::Server::start(dir.path(), &routes(&v1, ""));
    let http = net::Http::new();
    let call = |server: &net::Server, method: &str, path: &str, body: &[u8]| {
        http.send(method, &format!("{}{path}", server.url()), &[], body)
            .unwrap()
    };
    let pushed = call(
        &server,
        "PUT",
        "/v1/plugins/acme-erp-orders",
        &std::fs::read(&v2).unwrap(),
    );
    assert_eq!(pushed.status, 201, "{}", pushed.json());
    // Route b-cmds takes commands from now on (v2 serves them, v1 could not), and a-orders
    // is configured with another build of v2 (so its history is v1, v2; b-cmds' is v1).
    let v2_bare: &Path = wasm::ACME_ERP_ORDERS_V2.as_ref();
    server.stop();
    server.set_config(&routes(
        v2_bare,
        "[routes.b-cmds.commands]\nvendor = \"acme\"\n",
    ));
    server.restart();
    let actives = |server: &net::Server| {
        let plugins = call(server, "GET", "/v1/plugins/acme-erp-orders", b"").json();
        ["a-orders", "b-cmds"].map(|route| {
            plugins["acme-erp-orders"]["routes"][route]["active"]["sha256"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    };
    let served = [sha256(v2_bare), sha256(&v2)];
    assert_eq!(actives(&server), served);
    let before = call(&server, "GET", "/v1/messages/route:a-orders/history", b"").json();

    let refused = call(&server, "POST", "/v1/plugins/acme-erp-orders/rollback", b"");
    assert_eq!(refused.status, 422, "{}", refused.json());
    let problem = refused.json();
    assert_eq!(problem["code"], "missing-direction", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("route b-cmds") && detail.contains("outbound"),
        "{detail}"
    );
    assert_eq!(actives(&server), served, "a-orders did not go back either");
    let after = call(&server, "GET", "/v1/messages/route:a-orders/history", b"").json();
    assert_eq!(before["events"], after["events"], "no activation recorded");
    // The registry too: a restart serves v2 on both.
    server.stop();
    server.restart();
    assert_eq!(actives(&server), served);
}

/// `n` as an unsigned LEB128, onto `out`.
fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = u8::try_from(n & 0x7f).unwrap();
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `wasm` with a custom section `name` holding `payload` appended.
fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    leb128(&mut content, name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(&mut out, content.len());
    out.extend_from_slice(&content);
    out
}

/// `wasm` with a custom section holding `n`: another component (another sha256) of the same
/// plugin version.
fn variant(wasm: &[u8], n: usize) -> Vec<u8> {
    with_custom_section(wasm, "note", n.to_string().as_bytes())
}

/// The registry keeps of a plugin its newest `keep_versions` and the protected versions
/// (active, in the route's history), after 40 pushed versions; their compiled files go with
/// them; a dry run names what would go and removes nothing.
#[test]
fn issue_25_forty_pushed_versions_leave_the_bound_plus_the_protected_ones() {
    const KEEP: usize = 5;
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let v1 = packed(
        dir.path(),
        wasm::ACME_ERP_ORDERS,
        wasm::ACME_ERP_ORDERS_FIXTURES,
        "v1.wasm",
    );
    let cache = dir.path().join("cache");
    let config = |keep: usize| {
        net::config(
            &webhook.sink_table("hook"),
            "\"hook\"",
            &format!("[plugins]\nkeep_versions = {keep}\n"),
        )
        .replace(wasm::ACME_ERP_ORDERS, &v1.display().to_string())
        .replace("{cache_dir}", &cache.display().to_string())
    };
    let mut server = net::Server::start(dir.path(), &config(KEEP));
    let http = net::Http::new();
    let call = |server: &net::Server, method: &str, path: &str, body: &[u8]| {
        http.send(method, &format!("{}{path}", server.url()), &[], body)
            .unwrap()
    };
    let bytes = std::fs::read(&v1).unwrap();
    let mut pushed = Vec::new();
    for n in 0..40 {
        let wasm = variant(&bytes, n);
        let reply = call(&server, "PUT", "/v1/plugins/acme-erp-orders", &wasm);
        assert_eq!(reply.status, 201, "{}", reply.json());
        pushed.push(tests::swap::sha256_of(&wasm));
    }
    let on_disk = || -> BTreeSet<String> {
        std::fs::read_dir(dir.path().join("data/plugins/versions"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".wasm").map(str::to_owned)
            })
            .collect()
    };
    // The newest five, the active one and the five before it (its history): six.
    let newest: BTreeSet<String> = pushed[40 - (KEEP + 1)..].iter().cloned().collect();
    assert_eq!(on_disk(), newest);
    let compiled: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for sha in &pushed[..40 - (KEEP + 1)] {
        assert!(
            !compiled.iter().any(|f| f.starts_with(sha.as_str())),
            "{sha} compiled file left"
        );
    }
    // Three kept without activation: the newest, so kept.
    for n in 40..43 {
        let wasm = variant(&bytes, n);
        let reply = call(
            &server,
            "PUT",
            "/v1/plugins/acme-erp-orders?activate=false",
            &wasm,
        );
        assert_eq!(reply.status, 201, "{}", reply.json());
        pushed.push(tests::swap::sha256_of(&wasm));
    }
    assert_eq!(on_disk().len(), KEEP + 1 + 3);
    // Keeping one from now on: the two older of the three are no longer kept nor protected.
    server.stop();
    server.set_config(&config(1));
    server.restart();
    let dry = std::process::Command::new(tests::dragoman_bin())
        .args(["plugin", "gc", "--dry-run", "--server", &server.url()])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{dry:?}");
    let answer: Value = serde_json::from_slice(&dry.stdout).unwrap();
    let named: Vec<&str> = answer["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(
        named,
        [pushed[40].as_str(), pushed[41].as_str()],
        "{answer:#}"
    );
    assert_eq!(answer["dry_run"], true);
    assert_eq!(on_disk().len(), KEEP + 1 + 3, "a dry run removes nothing");
    let done = call(&server, "POST", "/v1/plugins/gc", b"").json();
    assert_eq!(done["versions"].as_array().unwrap().len(), 2, "{done:#}");
    assert_eq!(on_disk().len(), KEEP + 1 + 1);
    assert_eq!(
        call(&server, "GET", "/v1/plugins/acme-erp-orders", b"").json()["acme-erp-orders"]
            ["versions"]
            .as_array()
            .unwrap()
            .len(),
        KEEP + 1 + 1
    );
}

/// A component whose fixture section is 40 MB of empty entries (two bytes each, as many as
/// fit) is refused (`bad-fixtures`) with the host's peak memory growing by less than three
/// times its size and the compiled module.
#[test]
fn issue_25_a_fixture_bomb_is_refused_within_a_small_multiple_of_its_size() {
    const ENTRIES: usize = 20_000_000;
    let webhook = Webhook::start();
    let rig = Swapping::start(&webhook, false);
    // Format 1, a count of entries, then each an empty name and an empty file.
    let mut payload = vec![1u8];
    leb128(&mut payload, ENTRIES);
    payload.resize(payload.len() + 2 * ENTRIES, 0);
    let wasm = std::fs::read(wasm::ACME_ERP_ORDERS).unwrap();
    let bomb = with_custom_section(&wasm, "dragoman:fixtures", &payload);
    let file = rig.dir.path().join("bomb.wasm");
    std::fs::write(&file, &bomb).unwrap();
    let before = rig.server.resident_bytes();
    rig.server.reset_peak();
    let reply = rig.upload("acme-erp-orders", &file);
    assert_eq!(reply.status, 422, "{}", reply.json());
    assert_eq!(reply.json()["code"], "bad-fixtures", "{}", reply.json());
    let grown = rig.server.peak_bytes().saturating_sub(before);
    let bound = 3 * bomb.len() as u64 + (64 << 20);
    eprintln!(
        "peak grew {} MiB for a {} MiB candidate",
        grown >> 20,
        bomb.len() >> 20
    );
    assert!(
        grown < bound,
        "peak grew {} MiB for a {} MiB candidate (bound {} MiB)",
        grown >> 20,
        bomb.len() >> 20,
        bound >> 20
    );
    assert_eq!(rig.active(), sha256(&rig.v1), "v1 keeps serving");
}

#[test]
fn issue_11_a_bad_canary_is_rolled_back_by_itself_and_its_failures_replay_through_the_good_version()
{
    let webhook = Webhook::start();
    let rig = Swapping::start(&webhook, false);
    let v1 = sha256(&rig.v1);
    let broken = sha256(wasm::ACME_BROKEN.as_ref());

    // The bad version as a canary for half the messages.
    let wasm_bytes = std::fs::read(wasm::ACME_BROKEN).unwrap();
    let reply = rig.call("PUT", "/v1/plugins/acme-erp-orders?canary=50", &wasm_bytes);
    assert_eq!(reply.status, 201, "{}", reply.json());
    assert_eq!(reply.json()["status"], "canary");
    assert_eq!(reply.json()["routes"], json!(["orders"]));
    assert_eq!(rig.active(), v1, "the stable version stays active");

    // Orders until the canary is judged: it fails about half of its share, the stable
    // version none.
    let rolled_back = || {
        rig.history("route:orders")
            .into_iter()
            .find(|e| e["kind"] == "canary_rolled_back")
    };
    let mut refused = BTreeSet::new();
    let mut accepted = 0;
    for n in 0..400 {
        if rolled_back().is_some() {
            break;
        }
        let reply = rig.post(&order(&format!("CAN-{n}")));
        match reply.status {
            202 => accepted += 1,
            422 => {
                assert_eq!(reply.json()["code"], "schema-drift", "{}", reply.json());
                refused.insert(reply.json()["dead_letter"].as_str().unwrap().to_owned());
            }
            other => panic!("{other}: {}", reply.json()),
        }
    }
    let event = rolled_back().expect("the canary was rolled back within 400 orders");
    assert_eq!(event["data"]["how"], "automatic");
    assert_eq!(event["data"]["from_sha256"], json!(broken));
    assert_eq!(event["data"]["to_sha256"], json!(v1));
    assert!(event["data"]["canary_failure_percent"].as_f64().unwrap() > 20.0);
    assert!(refused.len() >= 5, "{} refused", refused.len());
    assert!(accepted > 0);
    let started = rig.history("route:orders");
    assert_eq!(started[0]["kind"], "canary_started");
    assert_eq!(started[0]["data"]["percent"], 50);

    // From now on every order meets v1.
    assert_eq!(rig.translated_by(&webhook, "CAN-AFTER-2"), v1);

    // Each order the canary failed is a dead letter naming it; replayed, v1 translates it.
    let listing = rig.call("GET", "/v1/dlq?limit=1000", b"").json();
    let entries = listing["dead_letters"].as_array().unwrap();
    let named: BTreeMap<String, String> = entries
        .iter()
        .filter(|e| e["plugin_sha256"] == json!(broken))
        .map(|e| {
            let id = e["id"].as_str().unwrap().to_owned();
            (id, e["message_id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        named.keys().cloned().collect::<BTreeSet<_>>(),
        refused,
        "exactly the refused ones, naming the canary"
    );
    for id in &refused {
        let reply = rig.call("POST", &format!("/v1/dlq/{id}/replay"), b"");
        assert_eq!(reply.status, 200, "{}", reply.json());
    }
    let producer_of = |message: &str| {
        webhook
            .received()
            .into_iter()
            .find(|e| e.headers["ce-correlationid"].to_str().unwrap() == message)
            .map(|e| e.plugin_sha256)
    };
    wait_until(
        Duration::from_secs(30),
        "the replayed orders arrive",
        || named.values().all(|m| producer_of(m).is_some()),
    );
    for message in named.values() {
        assert_eq!(
            producer_of(message).as_deref(),
            Some(v1.as_str()),
            "{message}"
        );
    }
}

#[test]
fn issue_11_the_2_am_story_shadow_canary_activation_and_a_pinned_replay_delivering_each_once() {
    let webhook = Webhook::start();
    let rig = Swapping::start(&webhook, false);
    let v2 = sha256(&rig.v2);
    let post = |body: String| rig.post(&body);

    // 02:00: the vendor starts sending API v2; v1 refuses every such order into the DLQ.
    for n in 0..6 {
        let reply = post(order_v2(&format!("NIGHT-{n}")));
        assert_eq!(reply.status, 422, "{}", reply.json());
        assert_eq!(reply.json()["code"], "missing-field");
    }

    // v2 runs in shadow on the live traffic: its report shows it handles what v1 refuses.
    let wasm = std::fs::read(&rig.v2).unwrap();
    let reply = rig.call("PUT", "/v1/plugins/acme-erp-orders?shadow=true", &wasm);
    assert_eq!(reply.status, 201, "{}", reply.json());
    assert_eq!(reply.json()["status"], "shadowing");
    for n in 6..10 {
        assert_eq!(post(order_v2(&format!("NIGHT-{n}"))).status, 422);
    }
    for n in 0..2 {
        assert_eq!(post(order(&format!("DAY-{n}"))).status, 202);
    }
    let report = || {
        let out = rig.cli(&["plugin", "shadow", "acme-erp-orders"]);
        assert!(out.status.success(), "{out:?}");
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        answer["shadow"]["orders"].clone()
    };
    wait_until(Duration::from_secs(30), "the shadow compares six", || {
        report()["compared"].as_u64() >= Some(6)
    });
    let shadow = report();
    assert_eq!(shadow["candidate"]["sha256"], json!(v2));
    assert_eq!(shadow["different"], 4, "{shadow}");
    assert_eq!(shadow["same"], 2, "{shadow}");
    assert_eq!(shadow["dropped"], 0);
    let sample = &shadow["samples"][0];
    assert_eq!(sample["active_output"]["refused"]["code"], "missing-field");
    assert_eq!(
        sample["candidate_output"]["events"][0]["type"],
        "order.created.v1"
    );
    let out = rig.cli(&["plugin", "shadow", "acme-erp-orders", "--stop"]);
    assert!(out.status.success(), "{out:?}");

    // Then a canary, then fully.
    let out = rig.cli(&[
        "plugin",
        "activate",
        "acme-erp-orders",
        "2.0.0",
        "--canary",
        "50",
    ]);
    assert!(out.status.success(), "{out:?}");
    for n in 0..4 {
        assert_eq!(post(order(&format!("CANARY-{n}"))).status, 202);
    }
    let out = rig.cli(&["plugin", "activate", "acme-erp-orders", "2.0.0"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rig.active(), v2);
    assert_eq!(rig.translated_by(&webhook, "MORNING-1"), v2);

    // The pinned replay: a dry run first, which stores nothing ...
    let out = rig.cli(&[
        "dlq",
        "replay",
        "--route",
        "orders",
        "--code",
        "missing-field",
        "--plugin",
        "1.0.0",
        "--version",
        "2.0.0",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{out:?}");
    let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["matched"], 10, "{dry}");
    assert_eq!(dry["counts"]["would_accept"], 10, "{dry}");
    assert_eq!(dry["target"]["sha256"], json!(v2));
    let night = |e: &tests::net::Received| e.subject.starts_with("NIGHT-");
    assert_eq!(webhook.received().iter().filter(|e| night(e)).count(), 0);

    // ... then for real, with a progress bar; each night order delivered once, by v2.
    let out = rig.cli(&[
        "dlq",
        "replay",
        "--route",
        "orders",
        "--code",
        "missing-field",
        "--version",
        "2.0.0",
    ]);
    assert!(out.status.success(), "{out:?}");
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["counts"]["accepted"], 10, "{done}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("10/10"));
    wait_until(Duration::from_secs(30), "the night orders arrive", || {
        webhook.received().iter().filter(|e| night(e)).count() >= 10
    });
    // Again: nothing left to replay, nothing delivered twice.
    let again = rig.call(
        "POST",
        "/v1/dlq/replay",
        br#"{"filter": {"route": "orders", "code": "missing-field"}, "version": "2.0.0"}"#,
    );
    assert_eq!(again.status, 200, "{}", again.json());
    assert_eq!(again.json()["matched"], 0);
    let delivered: Vec<_> = webhook.received().into_iter().filter(night).collect();
    let subjects: BTreeSet<&str> = delivered.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!((delivered.len(), subjects.len()), (10, 10), "each once");
    assert!(delivered.iter().all(|e| e.plugin_sha256 == v2));

    // The route's audit stream tells the night in order.
    let kinds: Vec<String> = rig
        .history("route:orders")
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "shadow_started",
            "shadow_stopped",
            "canary_started",
            "canary_ended",
            "plugin_activated"
        ]
    );
}

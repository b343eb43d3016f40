//! A `dragoman serve` whose route `orders` swaps versions of `acme-erp-orders`: the rig of
//! the hot swap tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::net::{self, Http, Server, Webhook, wait_until};
use crate::wasm;

/// `wasm` with the fixtures of `fixtures` embedded, written into `dir` as `name`.
pub fn packed(dir: &Path, wasm: &str, fixtures: &str, name: &str) -> PathBuf {
    let bytes = std::fs::read(wasm).unwrap();
    let packed = dragoman::fixtures::pack(&bytes, fixtures.as_ref()).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, packed).unwrap();
    path
}

/// v1 and v2 of `acme-erp-orders`, each with its fixtures embedded, written into `dir` as
/// `v1.wasm` and `v2.wasm`.
pub fn packed_versions(dir: &Path) -> (PathBuf, PathBuf) {
    let v1 = packed(
        dir,
        wasm::ACME_ERP_ORDERS,
        wasm::ACME_ERP_ORDERS_FIXTURES,
        "v1.wasm",
    );
    let v2 = packed(
        dir,
        wasm::ACME_ERP_ORDERS_V2,
        wasm::ACME_ERP_ORDERS_V2_FIXTURES,
        "v2.wasm",
    );
    (v1, v2)
}

/// The sha256 of a file, lower-case hex.
pub fn sha256(path: &Path) -> String {
    sha256_of(&std::fs::read(path).unwrap())
}

/// The sha256 of `bytes`, lower-case hex.
pub fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A v1 order with id `id`.
pub fn order(id: &str) -> String {
    format!(
        r#"{{"ord_id": "{id}", "ord_status": "O", "line_items": [{{"sku": "S", "qty": 2, "unit_prc": "1.25"}}]}}"#
    )
}

/// An order as API v2 of the vendor sends it: v1 refuses it (`missing-field`).
pub fn order_v2(id: &str) -> String {
    serde_json::json!({
        "orderNumber": id, "orderStatus": "OPEN",
        "lines": [{"productCode": "S", "quantity": 2, "unitPrice": "1.25"}],
    })
    .to_string()
}

/// A host serving route `orders` on the packed v1, delivering to `webhook`.
#[derive(Debug)]
pub struct Swapping {
    /// The test's directory: the config, the data, the packed versions, `drop/`.
    pub dir: tempfile::TempDir,
    /// The host.
    pub server: Server,
    /// A client.
    pub http: Http,
    /// v1 with its fixtures, the configured plugin.
    pub v1: PathBuf,
    /// v2 with its fixtures.
    pub v2: PathBuf,
}

impl Swapping {
    /// With a compiled cache of its own (else the one the tests share), to see what a
    /// restart compiles.
    pub fn start(webhook: &Webhook, own_cache: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (v1, v2) = packed_versions(dir.path());
        let plugins = format!(
            "[plugins]\nwatch_dir = \"{}\"\ndebounce_ms = 100\n\
             canary_window = 50\ncanary_minimum = 10\ncanary_margin_percent = 20\n",
            dir.path().join("drop").display()
        );
        let mut config = net::config(&webhook.sink_table("hook"), "\"hook\"", &plugins)
            .replace(wasm::ACME_ERP_ORDERS, &v1.display().to_string());
        if own_cache {
            let cache = dir.path().join("cache");
            config = config.replace("{cache_dir}", &cache.display().to_string());
        }
        let server = Server::start(dir.path(), &config);
        let http = Http::new();
        // A file dropped before the directory is watched would go unseen: wait for it.
        let ready = format!("{}/readyz", server.url());
        wait_until(Duration::from_secs(30), "the host is ready", || {
            http.send("GET", &ready, &[], b"")
                .is_ok_and(|reply| reply.status == 200)
        });
        Self {
            dir,
            server,
            http,
            v1,
            v2,
        }
    }

    /// The host's URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// One call to the host.
    pub fn call(&self, method: &str, path: &str, body: &[u8]) -> net::Reply {
        self.http.send(method, &self.url(path), &[], body).unwrap()
    }

    /// Posts `body` as a message to route `orders`.
    pub fn post(&self, body: &str) -> net::Reply {
        self.http
            .send(
                "POST",
                &self.url("/v1/routes/orders/messages"),
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .unwrap()
    }

    /// `PUT /v1/plugins/{name}` of `file`.
    pub fn upload(&self, name: &str, file: &Path) -> net::Reply {
        let wasm = std::fs::read(file).unwrap();
        self.call("PUT", &format!("/v1/plugins/{name}"), &wasm)
    }

    /// Drops `file` into the watched directory as `name`, as a deployment tool does: written
    /// under a hidden name, then renamed.
    pub fn drop_file(&self, file: &Path, name: &str) {
        let drop = self.dir.path().join("drop");
        let hidden = drop.join(format!(".{name}.part"));
        std::fs::copy(file, &hidden).unwrap();
        std::fs::rename(&hidden, drop.join(name)).unwrap();
    }

    /// Waits until the route serves `sha256`.
    pub fn wait_serving(&self, sha256: &str) {
        wait_until(Duration::from_secs(60), "the version serves", || {
            self.active() == sha256
        });
    }

    /// The value of a counter in `/metrics`.
    pub fn counter(&self, series: &str) -> u64 {
        let text = String::from_utf8(self.call("GET", "/metrics", b"").body).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// What `GET /v1/plugins` says of route `orders`.
    pub fn route(&self) -> Value {
        let reply = self.call("GET", "/v1/plugins", b"");
        assert_eq!(reply.status, 200, "{}", reply.json());
        reply.json()["plugins"]["acme-erp-orders"]["routes"]["orders"].clone()
    }

    /// The sha256 of the version route `orders` serves.
    pub fn active(&self) -> String {
        self.route()["active"]["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `dragoman ARGS --server URL`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(crate::dragoman_bin())
            .args(args)
            .args(["--server", &self.server.url()])
            .output()
            .expect("dragoman runs")
    }

    /// Posts an order and waits for its event: the sha256 of the version that produced it.
    pub fn translated_by(&self, webhook: &Webhook, id: &str) -> String {
        let reply = self.http.send(
            "POST",
            &self.url("/v1/routes/orders/messages"),
            &[("content-type", "application/json")],
            order(id).as_bytes(),
        );
        assert_eq!(reply.unwrap().status, 202);
        let mut found = None;
        wait_until(Duration::from_secs(30), "the event arrives", || {
            found = webhook.received().into_iter().find(|e| e.subject == id);
            found.is_some()
        });
        found.unwrap().plugin_sha256
    }

    /// The audit events of `stream`, in order (none yet: empty).
    pub fn history(&self, stream: &str) -> Vec<Value> {
        let reply = self.call("GET", &format!("/v1/messages/{stream}/history"), b"");
        if reply.status == 404 {
            return Vec::new();
        }
        assert_eq!(reply.status, 200, "{stream}: {}", reply.json());
        reply.json()["events"].as_array().unwrap().clone()
    }
}

/// The one swap a change made: (from sha256, to sha256).
pub fn one_swap(reply: &net::Reply) -> (String, String) {
    assert!(
        reply.status == 200 || reply.status == 201,
        "{} {}",
        reply.status,
        reply.json()
    );
    let answer = reply.json();
    assert_eq!(answer["status"], "serving", "{answer}");
    let swaps = answer["swaps"].as_array().unwrap();
    assert_eq!(swaps.len(), 1, "{answer}");
    let sha = |v: &Value| v["sha256"].as_str().unwrap().to_owned();
    (sha(&swaps[0]["from"]), sha(&swaps[0]["to"]))
}

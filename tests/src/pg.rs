//! PostgreSQL for the tests: a database of each test's own on the server `tests/run`
//! provides, dropped when the test is done.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The server the tests use: `DRAGOMAN_TEST_DATABASE_URL` (an administrative database on
/// it, which `tests/run` sets), else the standard port on loopback.
pub fn server_url() -> String {
    std::env::var("DRAGOMAN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database made for one test, dropped (its sessions ended) when this goes.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Makes a fresh, empty database.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached: the test needs it, and says so.
    pub fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "dragoman_test_{}_{}_{:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        admin(&format!("CREATE DATABASE {name}"));
        let server = server_url();
        // The server's URL with the new database in place of its path.
        let (base, query) = match server.split_once('?') {
            Some((base, query)) => (base.to_owned(), format!("?{query}")),
            None => (server.clone(), String::new()),
        };
        let root = base
            .rsplit_once('/')
            .filter(|(head, _)| head.contains("//") && !head.ends_with('/'))
            .map_or(base.as_str(), |(head, _)| head);
        let url = format!("{root}/{name}{query}");
        Self { name, url }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Runs one statement on the server's administrative database.
pub fn admin(sql: &str) {
    let server = server_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {server} is needed (tests/run provides it): {e}")
            });
        tokio::spawn(connection);
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
    });
}

/// `config` (a config of [`crate::net::config`]'s form) with its store in `database`.
pub fn with_store(config: &str, database: &TestDatabase) -> String {
    with_store_url(config, database.url())
}

/// The server's address, from [`server_url`].
///
/// # Panics
///
/// When the URL names no host and port that resolve.
pub fn server_address() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let url = server_url();
    let authority = authority(&url);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("no address in {url}"))
}

/// The `user@host:port` part of a URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("//").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

impl TestDatabase {
    /// Its URL with the server reached at `address` instead (through a proxy).
    pub fn url_through(&self, address: std::net::SocketAddr) -> String {
        let authority = authority(&self.url);
        let replaced = match authority.rsplit_once('@') {
            Some((user, _)) => format!("{user}@{address}"),
            None => address.to_string(),
        };
        self.url.replacen(authority, &replaced, 1)
    }
}

/// `config` with its store at `url`.
pub fn with_store_url(config: &str, url: &str) -> String {
    config.replacen(
        "data_dir = \"{data_dir}\"\n",
        &format!(
            "data_dir = \"{{data_dir}}\"\nstore = {{ type = \"postgres\", url = \"{url}\", pool = 8 }}\n"
        ),
        1,
    )
}

/// A session of the test's own on `url`, on a runtime of its own, to hold what a test holds
/// open while the store works.
#[derive(Debug)]
pub struct Session {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Session {
    /// Connects.
    pub fn open(url: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
        });
        Self { runtime, client }
    }

    /// Runs statements.
    pub fn run(&self, sql: &str) {
        self.runtime
            .block_on(async {
                // Drive the connection while the statement runs.
                self.client.batch_execute(sql).await
            })
            .unwrap();
    }

    /// The rows `sql` returns.
    pub fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.runtime
            .block_on(self.client.query(sql, &[]))
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
    }

    /// The first column of the one row `sql` returns.
    pub fn count(&self, sql: &str) -> i64 {
        self.runtime
            .block_on(self.client.query_one(sql, &[]))
            .unwrap()
            .get(0)
    }

    /// Waits, up to 10 s, until `n` sessions of the database wait for a lock.
    pub fn wait_for_waiters(&self, n: i64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let waiting = self.count(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            );
            if waiting == n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{waiting} sessions wait for a lock, expected {n}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A record as the store keeps it (a format byte, then MessagePack, LZ4-compressed in format
/// 3, or JSON in format 1), read as the record type `T` (digests are bytes in MessagePack,
/// which a JSON value cannot hold).
///
/// # Panics
///
/// When the bytes are no such record.
pub fn stored_record<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    match bytes.split_first() {
        Some((3, rest)) => {
            rmp_serde::from_slice(&lz4_flex::decompress_size_prepended(rest).expect("an LZ4 block"))
                .expect("a MessagePack record")
        }
        Some((2, rest)) => rmp_serde::from_slice(rest).expect("a MessagePack record"),
        Some((1, rest)) => serde_json::from_slice(rest).expect("a JSON record"),
        other => panic!("not a stored record: {other:?}"),
    }
}

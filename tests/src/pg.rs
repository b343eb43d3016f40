//! PostgreSQL for the tests: a database of each test's own on the server `tests/run`
//! provides, dropped when the test is done.

use std::sync::atomic::{AtomicU32, Ordering};

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

//! Driving `dragoman plugin new` and `dragoman plugin dev` as a plugin author does: shared by
//! the scaffold tests and the authoring benchmark.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// Creates the plugin folder `dir/name` in `lang` with `dragoman plugin new`.
///
/// # Panics
///
/// When the command fails.
pub fn new_plugin(lang: &str, name: &str, dir: &Path) -> PathBuf {
    let created = Command::new(crate::dragoman_bin())
        .args(["plugin", "new", "--lang", lang, name, "--dir"])
        .arg(dir)
        .output()
        .expect("dragoman runs");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    dir.join(name)
}

/// The target directory of the Rust guests: a Rust plugin built with it as
/// `CARGO_TARGET_DIR` reuses their compiled dependencies.
pub fn rust_target_dir() -> PathBuf {
    Path::new(crate::wasm::ACME_ERP_ORDERS)
        .ancestors()
        .nth(3)
        .expect("target/wasm/wasm32-wasip2/release")
        .to_owned()
}

/// A running `dragoman plugin dev FOLDER`, killed when dropped.
#[derive(Debug)]
pub struct DevLoop {
    child: Child,
    lines: Receiver<String>,
}

impl DevLoop {
    /// Starts the loop on `folder`.
    ///
    /// # Panics
    ///
    /// When it cannot start.
    pub fn spawn(folder: &Path) -> Self {
        let mut child = Command::new(crate::dragoman_bin())
            .args(["plugin", "dev"])
            .arg(folder)
            .env("CARGO_TARGET_DIR", rust_target_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dragoman plugin dev starts");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Every line it prints up to the first that starts with `end`, waiting at most `limit`.
    ///
    /// # Panics
    ///
    /// When no such line comes in time, with the lines seen.
    pub fn until(&self, end: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with(end);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => {
                    panic!("no line starting with {end:?} within {limit:?}; saw:\n{seen:#?}")
                }
            }
        }
    }
}

impl Drop for DevLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seconds in a `plugin dev` summary line (`… · edit to result 4.21 s (build and load …)`).
pub fn edit_to_result(summary: &str) -> Option<f64> {
    let (_, after) = summary.split_once("edit to result ")?;
    after.split_once(" s")?.0.parse().ok()
}

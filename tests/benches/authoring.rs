//! The edit-to-result time of plugin authoring with `dragoman plugin dev`, in each language:
//! a scaffold is created, the loop is started, then a source is saved `ROUNDS` times (a
//! changed line each time) and the time from the save to the printed result is taken, as the
//! loop measures it (from the first file notice to the counts line) and as the author sees it
//! (from the write to the counts line reaching this process).
//!
//! `cargo bench -p tests --bench authoring` (debug-built `dragoman`, as docs/plugins tells a
//! plugin author to build it); `AUTHORING_ROUNDS=N` changes the number of saves.

use std::path::Path;
use std::time::{Duration, Instant};

use tests::dev::{DevLoop, edit_to_result, new_plugin};

const LIMIT: Duration = Duration::from_secs(600);

fn main() {
    let rounds: usize = std::env::var("AUTHORING_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    println!("edit to result with `dragoman plugin dev`, median of {rounds} saves");
    for (lang, source, comment) in [
        ("rust", "src/lib.rs", "//"),
        ("python", "app.py", "#"),
        ("js", "app.js", "//"),
    ] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let folder = new_plugin(lang, &format!("bench-{lang}"), dir.path());
        let dev = DevLoop::spawn(&folder);
        let first = Instant::now();
        dev.until("2 passed", LIMIT);
        let first = first.elapsed();
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let saved = save(&folder.join(source), comment, round);
            let seen = dev.until("2 passed", LIMIT);
            outside.push(saved.elapsed().as_secs_f64());
            let summary = seen.last().expect("a counts line");
            inside.push(edit_to_result(summary).expect("the loop's own time"));
        }
        println!(
            "{lang:<7} first build and run {:>6.1} s · edit to result: {:>5.2} s (loop) {:>5.2} s (seen by the author)",
            first.as_secs_f64(),
            median(&mut inside),
            median(&mut outside),
        );
    }
}

/// Appends a comment line to `path` (a real save, which the next build must compile).
fn save(path: &Path, comment: &str, round: usize) -> Instant {
    let mut text = std::fs::read_to_string(path).expect("the source");
    text.push_str(&format!("{comment} save {round}\n"));
    let at = Instant::now();
    std::fs::write(path, text).expect("the source is written");
    at
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

//! The HTTP client behind `dlq`, `topology`, `breakers`, `command`, `audit` and the
//! registry's `plugin push|activate|rollback|list`: one call to
//! a running host, its JSON answer printed; and the offline audit check of a data dir.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use dragoman::storage::{Db, Storage};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The host or store the command talks to did not answer: exit 3, not "bad arguments". It is
/// the context of the error that says why (`main` prints the whole chain).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unreachable(pub(crate) String);

/// Calls a running host and prints the JSON answer; exit 1 on a 4xx or 5xx.
pub(crate) fn call(
    server: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> Result<ExitCode> {
    send(server, token, method, path, &[], Vec::new())
}

/// Calls a running host with a body and prints the JSON answer; exit 1 on a 4xx or 5xx.
pub(crate) fn send(
    server: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<ExitCode> {
    let (status, _, answer) = request(server, token, method, path, headers, body)?;
    print(status, &answer)
}

/// Sends a command (`body`, under `key` when given) to `route` and prints the answer; says
/// on stderr when the route's degradation answered. Exit 1 on a 4xx or 5xx.
pub(crate) fn command(
    server: &str,
    token: Option<&str>,
    route: &str,
    key: Option<&str>,
    body: Vec<u8>,
) -> Result<ExitCode> {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    let path = format!("/v1/routes/{route}/commands");
    let (status, answer_headers, answer) = request(server, token, "POST", &path, &headers, body)?;
    if let Some(mode) = answer_headers.get("dragoman-degraded") {
        let age = answer_headers
            .get("age")
            .map(|age| format!(", {} s old", age.to_str().unwrap_or("?")))
            .unwrap_or_default();
        eprintln!(
            "the vendor's circuit is open: answered by degradation `{}`{age}",
            mode.to_str().unwrap_or("?")
        );
    }
    print(status, &answer)
}

/// `dragoman dlq replay --route …`: a dry run finds the matching entries (and, with
/// `dry_run`, is printed); then each is replayed through the target, with a progress bar on
/// stderr, and the counts are printed. Exit 1 when any entry did not go through.
pub(crate) fn replay_batch(
    server: &str,
    token: Option<&str>,
    filter: serde_json::Value,
    target: Option<serde_json::Value>,
    dry_run: bool,
) -> Result<ExitCode> {
    let headers = [("content-type", "application/json")];
    let mut body = target.clone().unwrap_or_else(|| serde_json::json!({}));
    body["filter"] = filter;
    body["dry_run"] = serde_json::json!(true);
    let (status, _, answer) = request(
        server,
        token,
        "POST",
        "/v1/dlq/replay",
        &headers,
        body.to_string().into_bytes(),
    )?;
    if dry_run || status >= 400 {
        return print(status, &answer);
    }
    let found: serde_json::Value = serde_json::from_slice(&answer)?;
    let items = found["items"].as_array().cloned().unwrap_or_default();
    let target_body = target
        .map(|t| t.to_string().into_bytes())
        .unwrap_or_default();
    let mut counts: std::collections::BTreeMap<&'static str, usize> = Default::default();
    let total = items.len();
    for (n, item) in items.iter().enumerate() {
        let id = item["dead_letter"].as_str().unwrap_or_default();
        let path = format!("/v1/dlq/{}/replay", segment(id));
        let (status, _, answer) =
            request(server, token, "POST", &path, &headers, target_body.clone())?;
        let outcome = match status {
            200 => "accepted",
            404 => "gone",
            409 => "in_progress",
            422 => "rejected_again",
            _ => {
                eprintln!("\n{id}: {status} {}", String::from_utf8_lossy(&answer));
                "failed"
            }
        };
        *counts.entry(outcome).or_default() += 1;
        eprint!("\r{} {}/{total}", bar(n + 1, total), n + 1);
    }
    if total > 0 {
        eprintln!();
    }
    let summary = serde_json::json!({
        "target": found["target"], "matched": total, "counts": counts,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    let all =
        counts.get("accepted").copied().unwrap_or(0) + counts.get("gone").copied().unwrap_or(0);
    Ok(if all == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A progress bar of 30 cells.
fn bar(done: usize, total: usize) -> String {
    let filled = (done * 30).checked_div(total).unwrap_or(30);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(30 - filled))
}

/// Prints an answer, pretty when it is JSON; exit 1 on a 4xx or 5xx.
/// `text` as one path segment: every byte but RFC 3986's unreserved ones percent-encoded, so
/// that an id holding `/`, `?`, `%` or a space names one resource (the host decodes each
/// segment once).
pub(crate) fn segment(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").expect("writing to a string cannot fail");
        }
    }
    out
}

pub(crate) fn print(status: u16, body: &[u8]) -> Result<ExitCode> {
    if !body.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
            Err(_) => println!("{}", String::from_utf8_lossy(body).trim_end()),
        }
    }
    Ok(if status < 400 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn request(
    server: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, http::HeaderMap, Vec<u8>)> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // `https://` with the system's roots, or only the CA certificates in DRAGOMAN_CA_FILE.
    let ca_file = std::env::var_os("DRAGOMAN_CA_FILE").map(std::path::PathBuf::from);
    let connector = dragoman::tls::connector(ca_file.as_deref())?;
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        // Long enough for a host to compile a large pushed component and run its fixtures.
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            client.request(request.body(Full::new(Bytes::from(body)))?),
        )
        .await
        .map_err(|_| Unreachable(format!("{server} did not answer within 120 s")))?
        .map_err(|e| {
            anyhow::Error::new(e).context(Unreachable(format!("cannot reach {server}")))
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .context("the answer was cut off")?
            .to_bytes()
            .to_vec();
        Ok((status, headers, body))
    })
}

/// The page cache a command that reads a sled store offline opens it with: a walk reads
/// each page once.
const OFFLINE_CACHE: u64 = 4 << 20;

/// The store a command reads itself: the sled store in `dir` (its host stopped) or the
/// PostgreSQL store at `url`.
pub(crate) fn open_store(dir: Option<&Path>, url: Option<&str>) -> Result<Box<dyn Storage>> {
    match (dir, url) {
        (Some(dir), _) => {
            if !dir.is_dir() {
                bail!("{} is not a directory", dir.display());
            }
            Ok(Box::new(Db::open_with_cache(dir, OFFLINE_CACHE)?))
        }
        (None, Some(url)) => {
            // A URL that cannot be read is bad input (exit 2); one that does not answer, exit 3.
            url.parse::<tokio_postgres::Config>()
                .context("the database URL cannot be read")?;
            let store = dragoman::storage::Postgres::connect(url, 2).map_err(|e| {
                anyhow::Error::new(e)
                    .context(Unreachable("cannot open the PostgreSQL store".into()))
            })?;
            Ok(Box::new(store))
        }
        (None, None) => bail!("give --data-dir DIR (sled, host stopped) or --database-url URL"),
    }
}

/// `dragoman audit verify --data-dir DIR | --database-url URL [--archive DIR]`.
pub(crate) fn verify_store(
    store: &dyn Storage,
    anchors: &Anchors,
    archive: Option<&Path>,
) -> Result<ExitCode> {
    let (streams, findings) = match archive {
        Some(dir) => {
            let archive = dragoman::archive::Directory::open(dir)?;
            dragoman::archive::verify_store(store, &anchors.trusted, &archive)?
        }
        None => dragoman::audit::verify_store_against(store, &anchors.trusted)?,
    };
    report(streams, &findings, anchors)
}

/// The checkpoints `audit verify --checkpoints` checks the store against: those the key
/// signed, and why each other one is not trusted.
#[derive(Debug, Default)]
pub(crate) struct Anchors {
    trusted: Vec<dragoman::checkpoint::Checkpoint>,
    refused: Vec<String>,
}

impl Anchors {
    /// The notes in `file`, opened with the verifier key `key` (none without a file).
    pub(crate) fn read(file: Option<&Path>, key: Option<String>) -> Result<Self> {
        let (Some(file), Some(key)) = (file, key) else {
            return Ok(Self::default());
        };
        let key = dragoman::checkpoint::VerifierKey::parse(&key)
            .context("--checkpoint-key is not a verifier key")?;
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let notes = dragoman::checkpoint::notes(&text);
        if notes.is_empty() {
            bail!("{} holds no checkpoint", file.display());
        }
        let mut anchors = Self::default();
        for (n, note) in notes.iter().enumerate() {
            match dragoman::checkpoint::Checkpoint::open(note, &key) {
                Ok(checkpoint) => anchors.trusted.push(checkpoint),
                Err(e) => anchors.refused.push(format!("checkpoint {}: {e}", n + 1)),
            }
        }
        Ok(anchors)
    }
}

/// `dragoman audit verify --server URL`.
pub(crate) fn verify_online(server: &str, token: Option<&str>) -> Result<ExitCode> {
    let (status, _, body) = request(server, token, "GET", "/v1/audit/verify", &[], Vec::new())?;
    if status != 200 {
        bail!(
            "{server} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let findings: Vec<dragoman::audit::Finding> =
        serde_json::from_value(answer["findings"].clone()).unwrap_or_default();
    report(
        answer["streams"].as_u64().unwrap_or_default() as usize,
        &findings,
        &Anchors::default(),
    )
}

fn report(
    streams: usize,
    findings: &[dragoman::audit::Finding],
    anchors: &Anchors,
) -> Result<ExitCode> {
    for finding in findings {
        // Entity streams are named `entity:TYPE/ID`; the others are messages'.
        let stream = if finding.message_id.starts_with("entity:") {
            finding.message_id.clone()
        } else {
            format!("message {}", finding.message_id)
        };
        println!("{stream} event {}: {}", finding.version, finding.problem);
    }
    for refused in &anchors.refused {
        println!("{refused}");
    }
    if !anchors.trusted.is_empty() || !anchors.refused.is_empty() {
        println!(
            "{} checkpoints trusted, {} refused",
            anchors.trusted.len(),
            anchors.refused.len()
        );
    }
    let problems = findings.len() + anchors.refused.len();
    println!("{streams} streams verified, {problems} problems");
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `dragoman archive`: moves every route's audit events older than `older_than_secs` into a
/// new segment of the archive in `dir`.
pub(crate) fn archive(store: &dyn Storage, dir: &Path, older_than_secs: u64) -> Result<()> {
    let archive = dragoman::archive::Directory::open(dir)?;
    let keep = std::time::Duration::from_secs(older_than_secs);
    let done =
        dragoman::archive::archive(store, &archive, &|_| Some(keep), jiff::Timestamp::now())?;
    match (&done.segment, &done.digest) {
        (Some(segment), Some(digest)) => println!(
            "segment {segment} (sha256 {digest}): {} events of {} streams archived",
            done.events, done.streams
        ),
        _ => println!("nothing is old enough to archive"),
    }
    Ok(())
}

/// `dragoman audit show ID --data-dir DIR | --database-url URL [--at T] [--archive DIR]`:
/// the message's state and its hot events, read from the store itself. An instant only the
/// archive holds is refused (exit 1) unless the archive is given.
pub(crate) fn show_offline(
    store: &dyn Storage,
    id: &str,
    at: Option<jiff::Timestamp>,
    archive: Option<&Path>,
) -> Result<ExitCode> {
    let archive = archive
        .map(dragoman::archive::Directory::open)
        .transpose()?;
    let segments = archive
        .as_ref()
        .map(|a| a as &dyn dragoman::archive::SegmentStore);
    match dragoman::archive::message_state(store, id, at, segments)? {
        dragoman::archive::StateAt::Unknown if archive.is_none() => {
            eprintln!(
                "dragoman: no message `{id}` in the store: a message settled and archived whole \
                 is read with --archive DIR"
            );
            Ok(ExitCode::FAILURE)
        }
        dragoman::archive::StateAt::Unknown => {
            bail!("no message `{id}`, in the store or the archive")
        }
        dragoman::archive::StateAt::Archived { until, segment } => {
            eprintln!(
                "dragoman: message {id}'s events up to {until} are in the archive (segment \
                 {segment}): its state at {} needs --archive DIR",
                at.map(|t| t.to_string()).unwrap_or_default()
            );
            Ok(ExitCode::FAILURE)
        }
        dragoman::archive::StateAt::State(state) => {
            let answer = serde_json::json!({
                "state": state,
                "anchor": store.audit_anchor(id)?,
                "history": store.history(id)?,
            });
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! The commands that run or talk to a host: `serve`, and the HTTP client behind `dlq`,
//! `topology` and `audit`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use dragoman::Host;
use dragoman::config::Config;
use dragoman::db::Db;
use dragoman::storage::Storage;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// `dragoman serve --config FILE`.
pub(crate) fn run(config: &Path) -> Result<ExitCode> {
    let config = Config::from_file(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let host = Host::builder().config(config).build()?;
        tracing::info!(%address, "listening");
        // The address on stdout, for scripts that start the host on port 0.
        println!("listening on http://{address}");
        host.serve(listener, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Calls a running host and prints the JSON answer; exit 1 on a 4xx or 5xx.
pub(crate) fn call(
    server: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> Result<ExitCode> {
    let (status, body) = request(server, token, method, path)?;
    if !body.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
            Err(_) => println!("{}", String::from_utf8_lossy(&body)),
        }
    }
    Ok(if status < 400 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn request(server: &str, token: Option<&str>, method: &str, path: &str) -> Result<(u16, Vec<u8>)> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            client.request(request.body(Empty::new())?),
        )
        .await
        .with_context(|| format!("{server} did not answer within 30 s"))?
        .with_context(|| format!("cannot reach {server}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .context("the answer was cut off")?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    })
}

/// `dragoman audit verify --data-dir DIR`.
pub(crate) fn verify_offline(dir: &Path) -> Result<ExitCode> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let db = Db::open(dir)?;
    let streams = db.audit_streams()?;
    report(streams.len(), &dragoman::audit::verify(&streams))
}

/// `dragoman audit verify --server URL`.
pub(crate) fn verify_online(server: &str, token: Option<&str>) -> Result<ExitCode> {
    let (status, body) = request(server, token, "GET", "/v1/audit/verify")?;
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
    )
}

fn report(streams: usize, findings: &[dragoman::audit::Finding]) -> Result<ExitCode> {
    for finding in findings {
        println!(
            "message {} event {}: {}",
            finding.message_id, finding.version, finding.problem
        );
    }
    println!("{streams} streams verified, {} problems", findings.len());
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `dragoman watch`: a webhook sink that prints what it receives.
pub(crate) fn watch(listen: std::net::SocketAddr) -> Result<ExitCode> {
    use hyper::service::service_fn;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        println!("watching for events on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            };
            let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                let (parts, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let header = |name: &str| {
                    parts
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let data: serde_json::Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).into());
                let line = serde_json::json!({
                    "id": header("ce-id"),
                    "type": header("ce-type"),
                    "subject": header("ce-subject"),
                    "source": header("ce-source"),
                    "data": data,
                });
                println!("{line}");
                Ok::<_, std::convert::Infallible>(http::Response::new(
                    http_body_util::Empty::<Bytes>::new(),
                ))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

//! `dragoman watch`: a webhook sink that prints each event it receives on a line, for
//! trying a host out by hand.

use std::process::ExitCode;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;

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

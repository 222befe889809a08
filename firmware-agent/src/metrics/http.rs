//! The metrics endpoint's HTTP: just enough of HTTP/1.1 for a scraper, on a plain tokio
//! `TcpListener`.
//!
//! One request per connection (`Connection: close`). The request head is read up to
//! [`MAX_HEAD_BYTES`] and for at most [`READ_TIMEOUT`]; [`route`] (pure) decides the answer:
//! `GET /metrics` (or `HEAD`) renders, any other path is 404, any other method 405.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::view::AgentView;

/// A request head longer than this is refused.
pub const MAX_HEAD_BYTES: usize = 8192;
/// A client that has not sent its request head by then is dropped.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What to answer a request head with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The metrics; `with_body` is false for `HEAD`.
    Metrics {
        with_body: bool,
    },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Decides from the request line (the first line of `head`).
pub fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics { with_body: true },
        ("HEAD", "/metrics") => Route::Metrics { with_body: false },
        ("GET" | "HEAD", _) => Route::NotFound,
        _ => Route::MethodNotAllowed,
    }
}

/// The whole response for `route`, given the metrics text when it is wanted.
pub fn response(route: Route, metrics: Option<&str>) -> Vec<u8> {
    let (status, content_type, body, with_body) = match (route, metrics) {
        (Route::Metrics { with_body }, Some(text)) => {
            ("200 OK", super::CONTENT_TYPE, text, with_body)
        }
        (Route::Metrics { with_body }, None) => (
            "500 Internal Server Error",
            "text/plain; charset=utf-8",
            "the agent could not gather its metrics\n",
            with_body,
        ),
        (Route::NotFound, _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n",
            true,
        ),
        (Route::MethodNotAllowed, _) => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n",
            true,
        ),
        (Route::BadRequest, _) => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n",
            true,
        ),
    };
    let allow = if route == Route::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Binds `listen` (an error names the address and what to do).
pub async fn bind(listen: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| {
        format!("metrics: cannot listen on {listen} (another process on that port? set metrics.listen or metrics.enabled = false)")
    })
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    view: Arc<AgentView>,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tracing::info!(%addr, "metrics endpoint listening (GET /metrics)");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, view.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%addr, %error, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

async fn answer(mut stream: TcpStream, view: Arc<AgentView>) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) | Err(_) => {
            let _ = stream.write_all(&response(Route::BadRequest, None)).await;
            return;
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "metrics: reading a request failed");
            return;
        }
    };
    let route = route(&head);
    let metrics = match route {
        Route::Metrics { .. } => tokio::task::spawn_blocking(move || {
            let status = view.status(chrono::Utc::now());
            let (camera, anpr) = view.anpr_latency();
            super::render(&status, camera, &anpr.snapshot())
        })
        .await
        .ok(),
        _ => None,
    };
    if let Err(error) = stream.write_all(&response(route, metrics.as_deref())).await {
        tracing::debug!(%error, "metrics: writing the response failed");
    }
    let _ = stream.shutdown().await;
}

/// The request head (up to the blank line); `None` if it is too long or the client hung up.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_request_line() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { with_body: true }
        );
        assert_eq!(
            r("GET /metrics?name[]=x HTTP/1.0\r\n\r\n"),
            Route::Metrics { with_body: true }
        );
        assert_eq!(
            r("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { with_body: false }
        );
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(r("GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("\u{1}\u{2}"), Route::BadRequest);
        assert_eq!(route(&[0xff, 0xfe, b'\n']), Route::BadRequest);
    }

    #[test]
    fn responses_carry_length_type_and_close() {
        let ok = String::from_utf8(response(Route::Metrics { with_body: true }, Some("a 1\n")))
            .unwrap_or_default();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(ok.contains("Content-Length: 4\r\n") && ok.contains("Connection: close\r\n"));
        assert!(ok.ends_with("\r\n\r\na 1\n"));
        let head = String::from_utf8(response(Route::Metrics { with_body: false }, Some("a 1\n")))
            .unwrap_or_default();
        assert!(
            head.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        let nope = String::from_utf8(response(Route::MethodNotAllowed, None)).unwrap_or_default();
        assert!(nope.starts_with("HTTP/1.1 405") && nope.contains("Allow: GET, HEAD\r\n"));
    }
}

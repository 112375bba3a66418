//! The process's HTTP server: `/metrics` (Prometheus), `/` (the live page), `/api/state`
//! (the page's data: the cluster-wide views, `docs/api-state.md`), `/vendor/…` (the page's
//! chart library, uPlot, vendored: no CDN), `/healthz` (liveness: 503 when the event-time
//! frontier has not advanced for five minutes while newer input is pending). Everything is
//! read-only: any method but GET and HEAD is answered 405.
//!
//! tiny_http is used because the server is a side door of a dataflow process: a few
//! requests per second on one thread, no async runtime needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::live::LiveView;

/// How long the frontier may stand still with input pending before `/healthz` fails (the
/// Kubernetes liveness probe then restarts the pod, and timely's fail-stop restarts the rest).
const STALL: std::time::Duration = std::time::Duration::from_secs(300);

/// The live page (no build step: plain HTML and JavaScript, served from the binary).
const PAGE: &str = include_str!("page.html");
/// uPlot 1.6.32 (MIT, `vendor/uPlot.LICENSE`), from the npm registry's `uplot` package: a
/// small (50 kB) canvas chart library made for time series that update every second.
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
/// Its stylesheet.
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");

/// A running HTTP server.
pub struct HttpServer {
    /// The bound address (useful when the port was 0).
    pub addr: SocketAddr,
    /// The listening server (unblocked when dropped, which ends the thread).
    server: Arc<tiny_http::Server>,
    /// The thread answering requests.
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (default 127.0.0.1:9464: loopback unless configured otherwise) and serves
    /// `live` and the metrics in a background thread.
    pub fn start(addr: &str, live: LiveView) -> std::io::Result<Self> {
        let server = tiny_http::Server::http(addr).map_err(|e| std::io::Error::other(format!("binding {addr}: {e}")))?;
        let addr = server.server_addr().to_ip().ok_or_else(|| std::io::Error::other("the server is not on an IP address"))?;
        let server = Arc::new(server);
        let worker = server.clone();
        let thread = std::thread::Builder::new().name("http".into()).spawn(move || {
            for request in worker.incoming_requests() {
                let read_only = matches!(request.method(), tiny_http::Method::Get | tiny_http::Method::Head);
                let (status, content_type, body) = if read_only {
                    route(request.url(), &live)
                } else {
                    (405, "text/plain", "method not allowed: GET only\n".to_owned())
                };
                let header = tiny_http::Header::from_bytes("Content-Type", content_type).expect("valid header");
                let mut response = tiny_http::Response::from_string(body).with_status_code(status).with_header(header);
                if status == 405 {
                    response.add_header(tiny_http::Header::from_bytes("Allow", "GET, HEAD").expect("valid header"));
                }
                if let Err(e) = request.respond(response) {
                    tracing::debug!(error = %e, "http client went away");
                }
            }
        })?;
        Ok(Self { addr, server, thread: Some(thread) })
    }

    /// Blocks until the server is stopped (for `--serve`).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn route(url: &str, live: &LiveView) -> (u16, &'static str, String) {
    match url.split('?').next().unwrap_or("") {
        "/metrics" => (200, "text/plain; version=0.0.4", crate::telemetry::metrics().render()),
        "/api/state" => (200, "application/json", serde_json::to_string(&live.snapshot()).unwrap_or_default()),
        "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.to_owned()),
        "/vendor/uPlot.iife.min.js" => (200, "text/javascript; charset=utf-8", UPLOT_JS.to_owned()),
        "/vendor/uPlot.min.css" => (200, "text/css; charset=utf-8", UPLOT_CSS.to_owned()),
        "/healthz" => match crate::telemetry::liveness(STALL) {
            Ok(()) => (200, "text/plain", "ok\n".to_owned()),
            Err(reason) => (503, "text/plain", format!("{reason}\n")),
        },
        _ => (404, "text/plain", "not found\n".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_metrics_state_and_page_on_loopback() {
        let server = HttpServer::start(
            "127.0.0.1:0",
            LiveView::new(super::super::live::JobKind::Replay, crate::records::AlertThresholds { warning: 1.0, critical: 2.0 }),
        )
        .unwrap();
        let get = |path: &str| {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        };
        assert!(get("/metrics").contains("tweetoscope_build_info"));
        assert!(get("/api/state").contains("\"cascades\""));
        assert!(get("/vendor/uPlot.iife.min.js").contains("uPlot"));
        let post = {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            write!(s, "POST /metrics HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        };
        assert!(post.starts_with("HTTP/1.0 405") || post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.contains("Allow: GET, HEAD"), "{post}");
        assert!(get("/").contains("<html"));
        assert!(get("/nope").starts_with("HTTP/1.0 404") || get("/nope").contains("404"));
    }
}

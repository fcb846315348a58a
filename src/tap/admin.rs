//! The admin endpoint on `--metrics ADDR`: `/metrics` (Prometheus text), `/healthz`
//! (liveness), `/report` (the live shadow result, the `replay --json` schema) and
//! `/report.html` (the same for people). It runs on its own listener so a scraper or a
//! browser never competes with client connections for the proxy's accept loop.

use super::metrics::render;
use super::shared::Tap;
use crate::report::html::HtmlExporter;
use crate::report::{Exporter, JsonExporter};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn route(tap: &Tap, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            b"only GET\n".to_vec(),
        );
    }
    let no_shadow = || {
        respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"no live report: the tap runs without --shadow\n".to_vec(),
        )
    };
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(
                &tap.metrics,
                tap.recorder.stats(),
                tap.shadow.as_deref().map(|s| &s.stats),
            )
            .into_bytes(),
        ),
        "/healthz" | "/livez" => respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            b"ok\n".to_vec(),
        ),
        "/report" => match &tap.shadow {
            Some(s) => match JsonExporter.export(&s.result()) {
                Ok(b) => respond(StatusCode::OK, "application/json", b),
                Err(e) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("cannot render the report: {e}\n").into_bytes(),
                ),
            },
            None => no_shadow(),
        },
        "/report.html" => match &tap.shadow {
            // The same self-contained page as `replay --html`, rendered from the live result.
            Some(s) => match HtmlExporter.export(&s.result()) {
                Ok(page) => respond(StatusCode::OK, "text/html; charset=utf-8", page),
                Err(e) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("rendering the report failed: {e}\n").into_bytes(),
                ),
            },
            None => no_shadow(),
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"try /metrics, /healthz, /report or /report.html\n".to_vec(),
        ),
    }
}

/// Serves the admin endpoint on `listener` until the task is dropped.
pub async fn serve(tap: Arc<Tap>, listener: TcpListener) {
    let mut backoff = super::accept::AcceptBackoff::new(false);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.accepted();
                stream
            }
            Err(e) => {
                tokio::time::sleep(backoff.failed(&e)).await;
                continue;
            }
        };
        let tap = tap.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = route(&tap, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_report_page_is_the_escaped_html_report() {
        let mut r = crate::report::fixture::failing();
        r.interfaces[0].interface = "GET /<script>alert(1)</script>".into();
        let page = String::from_utf8(HtmlExporter.export(&r).unwrap()).unwrap();
        assert!(!page.contains("<script>alert(1)"));
        assert!(
            page.contains("script&#62;alert(1)") || page.contains("script&gt;alert(1)"),
            "the name shows escaped"
        );
        assert!(page.contains("FAIL"));
    }
}

//! The admin endpoint on `--metrics ADDR`: `/metrics` (Prometheus text), `/healthz`
//! (liveness), `/report` (the live shadow result, the `replay --json` schema) and
//! `/report.html` (the same for people). It runs on its own listener so a scraper or a
//! browser never competes with client connections for the proxy's accept loop.

use super::metrics::render;
use super::proxy::Tap;
use crate::analysis::result::RunResult;
use crate::report::{Exporter, JsonExporter};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::fmt::Write;
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
            Some(s) => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                html(&s.result()).into_bytes(),
            ),
            None => no_shadow(),
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"try /metrics, /healthz, /report or /report.html\n".to_vec(),
        ),
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small self-contained page of the live result: verdict, gate failures, and one row per
/// interface with its outcome counts and regressing fields. Refreshes itself every 10 s.
pub fn html(r: &RunResult) -> String {
    let mut o = String::with_capacity(16 << 10);
    let verdict = match r.verdict {
        crate::analysis::result::Verdict::Pass => "PASS",
        crate::analysis::result::Verdict::Fail => "FAIL",
    };
    let _ = write!(
        o,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>shadowdiff live shadow: {verdict}</title><style>body{{font-family:sans-serif;margin:2em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}.fail{{color:#b00}}.pass{{color:#070}}</style></head><body>\
         <h1>Live shadow: <span class=\"{}\">{verdict}</span></h1><p>{} &rarr; {} &middot; {}</p>",
        verdict.to_ascii_lowercase(),
        escape(&r.run.baseline),
        escape(&r.run.candidate),
        escape(&r.run.pacing),
    );
    if !r.gate_failures.is_empty() {
        o.push_str("<ul>");
        for g in &r.gate_failures {
            let _ = write!(o, "<li class=\"fail\">{}</li>", escape(g));
        }
        o.push_str("</ul>");
    }
    for w in &r.run.warnings {
        let _ = write!(o, "<p>warning: {}</p>", escape(w));
    }
    o.push_str(
        "<table><tr><th>interface</th><th>total</th><th>identical</th><th>noise only</th>\
         <th>different</th><th>missing rule</th><th>candidate error</th><th>baseline error</th>\
         <th>skipped</th><th>p50 prod / cand (ms)</th><th>differing fields</th></tr>",
    );
    let row = |o: &mut String,
               name: &str,
               c: &crate::analysis::result::Counts,
               lat: &str,
               fields: &str| {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            c.total,
            c.identical,
            c.noise_only,
            c.different,
            c.missing_rule,
            c.candidate_error,
            c.baseline_error,
            c.skipped,
            lat,
            fields
        );
    };
    for i in &r.interfaces {
        let fields: Vec<String> = i
            .status
            .iter()
            .chain(&i.fields)
            .chain(&i.headers)
            .filter(|p| p.regression)
            .map(|p| escape(&p.path))
            .collect();
        let lat = format!(
            "{:.1} / {:.1}",
            i.latency.baseline.p50_us as f64 / 1000.0,
            i.latency.candidate.p50_us as f64 / 1000.0
        );
        row(&mut o, &i.interface, &i.counts, &lat, &fields.join(", "));
    }
    row(&mut o, "all", &r.summary.counts, "", "");
    o.push_str("</table><p>JSON: <a href=\"/report\">/report</a></p></body></html>\n");
    o
}

/// Serves the admin endpoint on `listener` until the task is dropped.
pub async fn serve(tap: Arc<Tap>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
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
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let mut r = crate::report::fixture::failing();
        r.interfaces[0].interface = "GET /<script>alert(1)</script>".into();
        let page = html(&r);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("FAIL"));
    }
}

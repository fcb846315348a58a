//! The report formats from real runs: the HTML report in a real browser (no console errors,
//! every part present, a captured `<script>` shown as text and never run), JUnit against the
//! XSD, `report` re-rendering a saved result byte for byte, and the trend in every format.

use crate::util::*;
use std::path::{Path, PathBuf};

const EVIL_BODY: &str = "<script>document.title='pwned'</script>";
const EVIL_INTERFACE: &str = "<img src=x onerror=\"document.title='pwned2'\">";

/// How the candidate under test misbehaves.
#[derive(Clone, Copy)]
struct Breakage {
    price_as_string: bool,
    legacy_missing: bool,
    user_renamed: bool,
}

/// A small API: products, users, an HTML page (whose candidate version carries a script),
/// a rare legacy route, and an RPC-style call keyed by a header.
fn api(b: Breakage, candidate: bool) -> impl Fn(Seen) -> Answer + Send + Sync + 'static {
    move |s: Seen| {
        let p = s.path_and_query.clone();
        if let Some(id) = p.strip_prefix("/products/") {
            let price = if candidate && b.price_as_string {
                "\"12.50\""
            } else {
                "12.5"
            };
            Answer::json(200, format!(r#"{{"id":{id},"price":{price}}}"#))
        } else if let Some(id) = p.strip_prefix("/users/") {
            let name = if candidate && b.user_renamed {
                "User"
            } else {
                "user"
            };
            Answer::json(200, format!(r#"{{"id":{id},"name":"{name} {id}"}}"#))
        } else if p == "/page" {
            let extra = if candidate { EVIL_BODY } else { "" };
            Answer {
                status: 200,
                headers: vec![("content-type", "text/html".into())],
                body: format!("<p>hello</p>{extra}\n"),
            }
        } else if p == "/legacy/export" && !(candidate && b.legacy_missing) {
            Answer::json(200, r#"{"rows":3}"#)
        } else if p == "/rpc" {
            Answer::json(200, r#"{"ok":true}"#)
        } else {
            Answer::json(404, r#"{"error":"no route"}"#)
        }
    }
}

fn recording(dir: &Path) -> PathBuf {
    let mut items = Vec::new();
    for i in 0..25 {
        items.push(get(
            &format!("p{i}"),
            &format!("/products/{i}"),
            1_000 + i * 10,
        ));
        items.push(get(
            &format!("u{i}"),
            &format!("/users/{i}"),
            1_005 + i * 10,
        ));
    }
    for i in 0..3 {
        items.push(get(&format!("page{i}"), "/page", 2_000 + i));
        let mut rpc = get(&format!("rpc{i}"), "/rpc", 2_100 + i);
        rpc.request
            .headers
            .push(("x-api".into(), EVIL_INTERFACE.into()));
        items.push(rpc);
    }
    items.push(get("legacy-1", "/legacy/export", 3_000));
    write_recording(&dir.join("api.jsonl"), &items)
}

/// Replays the recording against a fresh baseline and a candidate broken as `b`.
async fn replay(dir: &Path, b: Breakage, extra: &[String]) -> std::process::Output {
    let rec = recording(dir);
    let ok = Breakage {
        price_as_string: false,
        legacy_missing: false,
        user_renamed: false,
    };
    let old = TestServer::start(api(ok, false)).await;
    let new = TestServer::start(api(b, true)).await;
    let mut args = vec![
        "replay".to_string(),
        rec.display().to_string(),
        "--baseline".into(),
        old.url(),
        "--candidate".into(),
        new.url(),
        "--interface".into(),
        "header:x-api".into(),
    ];
    args.extend(extra.iter().cloned());
    shadowdiff_async(args).await
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

const BROKEN: Breakage = Breakage {
    price_as_string: true,
    legacy_missing: true,
    user_renamed: false,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_renders_in_chromium_without_running_captured_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (dir.path().join("r.json"), dir.path().join("r.html"));
    let o = replay(
        dir.path(),
        BROKEN,
        &["--json".into(), s(&json), "--html".into(), s(&html)],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    let page = std::fs::read_to_string(&html).unwrap();
    // The escaping holds in the file itself, browser or not.
    assert!(!page.contains(EVIL_BODY) && !page.contains("<img src=x"));

    let Some(chromium) = chromium_binary() else {
        return;
    };
    let (dom, console) = chromium_dump_dom(&chromium, &html);
    assert!(console.is_empty(), "console messages: {console:#?}");
    // The report's own script ran (CSP allowed it) and the captured one did not.
    assert!(
        dom.contains("data-js=\"ready\""),
        "the report script did not run"
    );
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap();
    assert!(title.starts_with("shadowdiff: FAIL"), "{title}");
    assert!(!dom.contains("pwned</title>") && !title.contains("pwned"));
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "the captured script is not shown as text"
    );
    assert!(
        !dom.contains("<img src=\"x\""),
        "captured markup became an element"
    );
    // The verdict, every interface row, and a chart per interface with latency samples.
    assert!(dom.contains("id=\"verdict\" class=\"verdict fail\""));
    let interfaces = r["interfaces"].as_array().unwrap();
    assert_eq!(
        dom.matches("<tr data-interface=").count(),
        interfaces.len(),
        "one row per interface"
    );
    for i in interfaces {
        let name = i["interface"].as_str().unwrap();
        let shown = name
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(dom.contains(&shown), "no row for {name}");
    }
    let with_latency = interfaces
        .iter()
        .filter(|i| i["latency"]["baseline"]["count"].as_u64().unwrap() > 0)
        .count();
    assert!(with_latency >= 4);
    assert_eq!(
        dom.matches("<svg class=\"latency-chart").count(),
        with_latency
    );
    assert!(dom.contains("<polyline points="));
    assert!(dom.contains("id=\"missing-rules\""));
    assert!(dom.contains(&format!("{0} of {0} shown", interfaces.len())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_validates_against_the_xsd_and_names_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let o = replay(dir.path(), BROKEN, &["--junit".into(), s(&junit)]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 1);
    assert!(
        xml.contains("<failure message=\"missing rule\" type=\"missing_rule\">"),
        "{xml}"
    );
    assert!(xml.contains("samples: legacy-1"), "{xml}");
    assert!(
        xml.contains("field $.price (type): differed in 25 of 25"),
        "{xml}"
    );
    let Some(xmllint) = xmllint_binary() else {
        return;
    };
    let xsd = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/junit.xsd");
    let v = std::process::Command::new(xmllint)
        .args(["--noout", "--schema", xsd])
        .arg(&junit)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", describe(&v));
    // The schema is not a rubber stamp: a testcase without its classname is refused.
    let broken = dir.path().join("broken.xml");
    std::fs::write(
        &broken,
        xml.replace(" classname=\"shadowdiff.interfaces\"", ""),
    )
    .unwrap();
    let v = std::process::Command::new(xmllint_binary().unwrap())
        .args(["--noout", "--schema", xsd])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!v.status.success(), "xmllint accepted a broken file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trend_marks_every_format_and_report_rerenders_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let night1 = dir.path().join("night1.json");
    let o = replay(dir.path(), BROKEN, &["--json".into(), s(&night1)]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));

    // Night 2: the price is fixed, the legacy rule is still missing, users broke.
    let tonight = Breakage {
        price_as_string: false,
        legacy_missing: true,
        user_renamed: true,
    };
    let p = |n: &str| dir.path().join(n);
    let o = replay(
        dir.path(),
        tonight,
        &[
            "--previous".into(),
            s(&night1),
            "--json".into(),
            s(&p("night2.json")),
            "--html".into(),
            s(&p("night2.html")),
            "--junit".into(),
            s(&p("night2.xml")),
            "--markdown".into(),
            s(&p("night2.md")),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&p("night2.json"));
    let states: Vec<(String, String)> = r["trend"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["interface"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("GET /users/{id}".into(), "new".into())),
        "{states:?}"
    );
    assert!(states.contains(&("GET /legacy/export".into(), "still_failing".into())));
    assert!(states.contains(&("GET /products/{id}".into(), "fixed".into())));
    let paths = r["trend"]["paths"].as_array().unwrap();
    assert!(paths
        .iter()
        .any(|t| t["path"] == "$.name" && t["state"] == "new"));
    assert!(paths
        .iter()
        .any(|t| t["path"] == "$.price (type)" && t["state"] == "fixed"));

    let terminal = String::from_utf8_lossy(&o.stdout);
    assert!(terminal.contains("DIFFERENT (new)"), "{terminal}");
    assert!(terminal.contains("GET /products/{id}: fixed"), "{terminal}");
    let md = std::fs::read_to_string(p("night2.md")).unwrap();
    assert!(
        md.contains("| **new** |") && md.contains("Fixed: `GET /products/{id}`"),
        "{md}"
    );
    let xml = std::fs::read_to_string(p("night2.xml")).unwrap();
    assert!(xml.contains("trend: new since") && xml.contains("trend: still failing since"));
    let html = std::fs::read_to_string(p("night2.html")).unwrap();
    assert!(html.contains("class=\"trend t-new\"") && html.contains("class=\"trend t-fixed\""));

    // `report` renders the saved result exactly as the run did.
    let again = |flag: &str, name: &str| {
        let out = p(name);
        let o = shadowdiff(&["report", &s(&p("night2.json")), flag, &s(&out)]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "verdict exit code: {}",
            describe(&o)
        );
        assert!(o.stdout.is_empty(), "report into files prints nothing");
        std::fs::read(out).unwrap()
    };
    assert_eq!(again("--html", "again.html"), html.as_bytes());
    assert_eq!(again("--junit", "again.xml"), xml.as_bytes());
    assert_eq!(again("--markdown", "again.md"), md.as_bytes());
    // ...and to standard output, or as the terminal report when nothing else is asked.
    let o = shadowdiff(&["report", &s(&p("night2.json")), "--markdown", "-"]);
    assert_eq!(o.stdout, md.as_bytes());
    let o = shadowdiff(&["report", &s(&p("night2.json"))]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("FAIL: "));
    // A trend can also be added afterwards.
    let o = shadowdiff(&[
        "report",
        &s(&night1),
        "--previous",
        &s(&p("night2.json")),
        "--markdown",
        "-",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Trend since"),
        "{}",
        describe(&o)
    );
}

#[test]
fn report_names_a_file_that_is_not_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"shadowdiff_result\": 1,\n \"verdict\": 7}").unwrap();
    let o = shadowdiff(&["report", &s(&bad), "--html", "-"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.json:2:") && err.contains("not a shadowdiff result"),
        "{err}"
    );
    let o = shadowdiff(&["report", "/nonexistent/r.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_result_that_is_missing_or_not_a_result_costs_the_trend_not_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let missing = p("last-night.json");
    let bad = p("bad.json");
    std::fs::write(&bad, "{\"shadowdiff_result\": 1,\n \"verdict\": 7}").unwrap();

    // The nightly job whose last night wrote nothing still replays and gets its verdict.
    let o = replay(
        dir.path(),
        BROKEN,
        &[
            "--previous".into(),
            s(&missing),
            "--json".into(),
            s(&p("night.json")),
            "--markdown".into(),
            s(&p("night.md")),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "the verdict: {}", describe(&o));
    let r = read_json(&p("night.json"));
    assert!(r.get("trend").is_none(), "{r:#}");
    let warning = format!(
        "--previous {}: missing (no such file); this run has no trend",
        s(&missing)
    );
    assert!(
        r["run"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == warning.as_str()),
        "{:#}",
        r["run"]
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .any(|l| l == format!("shadowdiff: warning: {warning}")),
        "{}",
        describe(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("warning: {warning}")),
        "{}",
        describe(&o)
    );
    let md = std::fs::read_to_string(p("night.md")).unwrap();
    assert!(md.contains("- warning: --previous"), "{md}");

    // A file that is not a result is named with its line, by `report` and `merge` alike.
    for args in [
        vec!["report".to_string(), s(&p("night.json"))],
        vec![
            "merge".to_string(),
            s(&p("night.json")),
            "--json".into(),
            s(&p("merged.json")),
        ],
    ] {
        let mut args = args;
        args.extend([
            "--previous".into(),
            s(&bad),
            "--markdown".into(),
            "-".into(),
        ]);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = shadowdiff(&a);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let expect = format!("--previous {}:2: not a shadowdiff result", s(&bad));
        assert!(err.contains(&expect), "{args:?}: {}", describe(&o));
        let md = String::from_utf8_lossy(&o.stdout);
        assert!(md.contains("bad.json:2: not a shadowdiff result"), "{md}");
        assert!(!md.contains("Trend since"), "{md}");
    }
    let merged = read_json(&p("merged.json"));
    assert!(merged["run"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("not a shadowdiff result")));
}

/// Warnings read like errors (`shadowdiff: warning: …`, no timestamp or level column) at
/// every verbosity; -v still gives its progress lines the log format with timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_print_as_shadowdiff_warning_and_v_keeps_timestamped_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.json");
    let ok = Breakage {
        price_as_string: false,
        legacy_missing: false,
        user_renamed: false,
    };
    for verbose in [None, Some("-v")] {
        let mut extra = vec!["--previous".to_string(), s(&missing)];
        if let Some(v) = verbose {
            extra.extend([v.into(), "--wait-ready".into(), "/rpc".into()]);
        }
        let o = replay(dir.path(), ok, &extra).await;
        // The candidate's page differs whatever the breakage: a verdict, not an error.
        assert_eq!(o.status.code(), Some(1), "{verbose:?}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("--previous")).collect();
        assert_eq!(
            warnings,
            [format!(
                "shadowdiff: warning: --previous {}: missing (no such file); this run has no trend",
                s(&missing)
            )],
            "{verbose:?}: {err}"
        );
        assert!(!err.contains(" WARN "), "{verbose:?}: {err}");
        let ready: Vec<&str> = err.lines().filter(|l| l.contains("ready after")).collect();
        if verbose.is_some() {
            // The baseline, the candidate, and the baseline again as the noise probe.
            assert_eq!(ready.len(), 3, "{err}");
            for line in ready {
                // `2026-01-02T03:04:05.678901Z  INFO baseline ready after 0.0s`
                let (time, rest) = line.split_once(' ').unwrap();
                assert!(time.ends_with('Z') && time.contains('T'), "{line}");
                assert!(rest.trim_start().starts_with("INFO "), "{line}");
            }
        } else {
            assert!(ready.is_empty(), "{err}");
        }
    }
}

/// Measures a page from inside: run in a test-only copy of the report (the report's own
/// Content-Security-Policy admits its own script only), it opens every section, then posts
/// to the page around it what a reader at this width would meet: how wide the page and
/// each scrolling panel are against the room they have, the words of prose (letters between
/// spaces) that a line break cut in two, the elements outside code and paths that may break words
/// anywhere, and, per latency chart, which series is on top at the baseline's first dot and
/// just beside it (a hit test, so what is painted over what).
const MEASURE: &str = r#"
(function () {
  "use strict";
  var out = {};
  Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  var de = document.documentElement;
  out.viewport = window.innerWidth;
  out.client_width = de.clientWidth;
  out.scroll_width = de.scrollWidth;
  out.panels = Array.prototype.map.call(document.querySelectorAll(".panel, .scroll"), function (p) {
    var t = p.querySelector("table");
    return { table: t && t.id ? t.id : (p.closest("section") || {}).id || "", scroll: p.scrollWidth, client: p.clientWidth };
  });
  var token = function (el) { return el.closest("code, pre, .mono, svg"); };
  out.loose = [];
  Array.prototype.forEach.call(document.body.querySelectorAll("*"), function (el) {
    var cs = getComputedStyle(el);
    var loose = cs.overflowWrap === "anywhere" || cs.wordBreak === "break-all" || cs.wordBreak === "break-word";
    if (loose && !token(el)) { out.loose.push(el.tagName.toLowerCase() + "." + el.className); }
  });
  out.broken = [];
  var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  var node;
  while ((node = walker.nextNode())) {
    var holder = node.parentElement;
    if (!holder || holder.closest("script, style, title, svg")) { continue; }
    var re = /\S+/g, m;
    while ((m = re.exec(node.data))) {
      // Words of prose; a path or an id is a token, which may break where it must.
      var word = /^[("']?([A-Za-z]{2,})[)"',.;:!?]*$/.exec(m[0]);
      if (!word) { continue; }
      var r = document.createRange();
      r.setStart(node, m.index);
      r.setEnd(node, m.index + m[0].length);
      var tops = {};
      Array.prototype.forEach.call(r.getClientRects(), function (x) { if (x.width > 0) { tops[Math.round(x.top)] = 1; } });
      if (Object.keys(tops).length > 1) {
        out.broken.push({ word: word[1], in_token: !!token(holder), element: holder.tagName.toLowerCase() + "." + holder.className, text: holder.textContent.slice(0, 80) });
      }
    }
  }
  out.charts = Array.prototype.map.call(document.querySelectorAll("svg.latency-chart"), function (svg) {
    var details = svg.closest("details");
    var name = details.querySelector("summary .name").textContent;
    var dot = svg.querySelector(".s-baseline circle");
    if (!dot) { return { interface: name }; }
    dot.scrollIntoView({ block: "center" });
    var b = dot.getBoundingClientRect();
    var x = b.left + b.width / 2, y = b.top + b.height / 2;
    var series = function (px, py) {
      var el = document.elementFromPoint(px, py);
      var g = el && el.closest("g");
      return g ? g.getAttribute("class") : (el ? el.tagName.toLowerCase() : "");
    };
    // Just outside the baseline's dot, inside the candidate's twice as large one.
    return { interface: name, on_dot: series(x, y), beside: series(x, y + b.height / 2 + 1) };
  });
  window.parent.postMessage(JSON.stringify(out), "*");
})();
"#;

/// The report `html` measured at `width` px by [`MEASURE`], and a screenshot of it at that
/// width written to `shot`. A headless window is never narrower than 500 px, so the page
/// is shown in an iframe `width` px wide, in a wrapper page that --dump-dom prints with the
/// measurements posted to it.
fn measure(chromium: &Path, html: &Path, width: u32, shot: &Path) -> serde_json::Value {
    let dir = html.parent().unwrap();
    let page = std::fs::read_to_string(html).unwrap();
    let csp_start = page
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .unwrap();
    let csp_end = csp_start + page[csp_start..].find('>').unwrap() + 1;
    let copy = format!(
        "{}{}",
        &page[..csp_start],
        page[csp_end..].replace("</body>", &format!("<script>{MEASURE}</script></body>"))
    );
    let measured = dir.join(format!("measured-{width}.html"));
    std::fs::write(&measured, copy).unwrap();
    let frame = |src: &Path, script: &str| {
        format!(
            "<!DOCTYPE html><html><body style=\"margin:0\"><iframe src=\"{}\" width=\"{width}\" \
             height=\"2400\" style=\"border:0;display:block\"></iframe><pre id=\"measured\"></pre>\
             {script}</body></html>",
            src.file_name().unwrap().to_str().unwrap()
        )
    };
    let listen = "<script>window.addEventListener(\"message\", function (e) { \
                  document.getElementById(\"measured\").textContent = e.data; });</script>";
    let wrapper = dir.join(format!("wrapper-{width}.html"));
    std::fs::write(&wrapper, frame(&measured, listen)).unwrap();
    let window = format!("--window-size={},2400", width.max(500));
    let out = chromium_run(
        chromium,
        &[
            window.clone(),
            "--virtual-time-budget=5000".into(),
            "--dump-dom".into(),
        ],
        &wrapper,
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let json = dom
        .split("<pre id=\"measured\">")
        .nth(1)
        .and_then(|t| t.split("</pre>").next())
        .unwrap_or_else(|| panic!("no measurements in {dom}"))
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    // The screenshot shows the report itself, with its policy, as a reader gets it.
    let plain = dir.join(format!("plain-{width}.html"));
    std::fs::write(&plain, frame(html, "")).unwrap();
    chromium_run(
        chromium,
        &[
            window,
            "--hide-scrollbars".into(),
            format!("--screenshot={}", shot.display()),
        ],
        &plain,
    );
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_fits_1400_px_wraps_words_at_400_px_and_shows_what_it_promises() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // Two writes beside the API: an interface nothing of which is replayed.
    let mut orders = Vec::new();
    for i in 0..2 {
        let mut ex = get(&format!("order{i}"), "/orders", 4_000 + i);
        ex.request.method = "POST".into();
        orders.push(ex);
    }
    let writes = write_recording(&p("writes.jsonl"), &orders);
    let o = replay(dir.path(), BROKEN, &["--json".into(), s(&p("night1.json"))]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let tonight = Breakage {
        price_as_string: false,
        legacy_missing: true,
        user_renamed: true,
    };
    let o = replay(
        dir.path(),
        tonight,
        &["--json".into(), s(&p("night2.json")), s(&writes)],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    // Both targets as fast as each other on one interface: two equal latency curves.
    let mut r = read_json(&p("night2.json"));
    let users = r["interfaces"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|i| i["interface"] == "GET /users/{id}")
        .unwrap();
    users["latency"]["candidate"] = users["latency"]["baseline"].clone();
    std::fs::write(p("equal.json"), serde_json::to_vec(&r).unwrap()).unwrap();
    let html = p("report.html");
    let o = shadowdiff(&[
        "report",
        &s(&p("equal.json")),
        "--previous",
        &s(&p("night1.json")),
        "--html",
        &s(&html),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let page = std::fs::read_to_string(&html).unwrap();
    // A trend column, the candidate's own no-route answer, and curl for a sample exchange.
    assert!(page.contains("<th tabindex=\"0\" data-type=\"text\">trend</th>"));
    assert!(
        page.contains("<span class=\"status\">404</span> <code class=\"excerpt\">{&#34;error&#34;:&#34;no route&#34;}</code>")
            || page.contains("<span class=\"status\">404</span> <code class=\"excerpt\">{&quot;error&quot;:&quot;no route&quot;}</code>"),
        "{}",
        &page[page.find("id=\"missing-rules\"").unwrap()..][..1500]
    );
    let candidate = r["run"]["candidate"].as_str().unwrap();
    assert!(
        page.contains(&format!(
            "-H &#39;user-agent:&#39; -H &#39;accept:&#39; {candidate}/users/"
        )) || page.contains(&format!(
            "-H &#x27;user-agent:&#x27; -H &#x27;accept:&#x27; {candidate}/users/"
        )),
        "no curl to the candidate"
    );
    // A fully skipped interface reads "skipped" in its row and its section alike.
    let row = &page[page.find("<tr data-interface=\"POST /orders\"").unwrap()..];
    assert!(row[..row.find("</tr>").unwrap()].contains("b-skipped\">skipped</span>"));
    let section = &page[page
        .find("<span class=\"name\">POST /orders</span>")
        .unwrap()..];
    let section = &section[..section.find("</details>").unwrap()];
    assert!(section.contains("b-skipped\">skipped</span>"), "{section}");
    assert!(
        section.contains("Skipped: none of its 2 exchanges was sent to either target"),
        "{section}"
    );
    assert!(!section.contains("b-ok"), "{section}");

    let Some(chromium) = chromium_binary() else {
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let wide = measure(&chromium, &html, 1400, &shots.join("report-1400.png"));
    let narrow = measure(&chromium, &html, 400, &shots.join("report-400.png"));
    for (w, m) in [(1400, &wide), (400, &narrow)] {
        eprintln!("at {w} px: {m}");
        assert_eq!(m["viewport"], w, "{m}");
        assert!(
            m["scroll_width"].as_u64() <= m["client_width"].as_u64(),
            "the page is wider than {w} px: {m}"
        );
        assert_eq!(m["loose"], serde_json::json!([]), "{m}");
        let broken: Vec<&serde_json::Value> = m["broken"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["in_token"] == false)
            .collect();
        assert!(broken.is_empty(), "words broken at {w} px: {broken:?}");
        // Where the two curves are equal, both show: the baseline's dashes on top of its
        // dot, the candidate's wider line right beside it.
        let chart = m["charts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["interface"] == "GET /users/{id}")
            .unwrap();
        assert_eq!(chart["on_dot"], "s-baseline", "{chart}");
        assert_eq!(chart["beside"], "s-candidate", "{chart}");
        let shot = std::fs::metadata(shots.join(format!("report-{w}.png"))).unwrap();
        assert!(
            shot.len() > 10_000,
            "screenshot at {w} px: {} bytes",
            shot.len()
        );
    }
    // At 1,400 px every table fits its panel, the interface table with its trend column too.
    for p in wide["panels"].as_array().unwrap() {
        assert!(
            p["scroll"].as_u64() <= p["client"].as_u64(),
            "{p} in {wide}"
        );
    }
}

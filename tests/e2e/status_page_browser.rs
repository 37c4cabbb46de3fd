//! The status page (`secret_rotator::statuspage::render`) as a person sees it: rendered by
//! Debian's headless Chromium, then checked from the screenshot's pixels and the parsed DOM.
//!
//! The report has four credentials (healthy with 150 days left, warning with 12, expired with a
//! problem, one whose last run failed) and some recent rotations. The screenshot must not be
//! blank; the bar fills are found by colour (#2e7d32 green, #f9a825 amber, #c62828 red) as solid
//! 14 px high blocks and must come in the rows' order with widths matching the days left; every
//! row's left marker must have the same colour as its bar. `--dump-dom` must show one row per
//! credential with the right health class. Nothing may be fetched from the network: the HTML has
//! no http(s) URL, and Chromium runs behind a loopback trap proxy that must see no request but
//! the browser's own background calls to a short list of Google hosts (a control test shows the
//! trap does catch a page that reaches out; another that the bar finder notices wrong bars).
//!
//! The certificates section gets the same checks on a report of two certificate credentials
//! (a healthy one, one blocked by Key Vault with hostile text): bar colours and widths, rows in
//! the DOM, Azure's text parsed as text.
//!
//! Chromium missing is a failure naming the install command, not a skip. Set
//! `STATUS_PAGE_SCREENSHOT=<path>` to keep the screenshot (docs/status-page.png is made so).

use crate::support::browser::{self, Component, Image, TempDir};
use chrono::{DateTime, Duration, TimeZone, Utc};
use secret_rotator::engine::report::{
    ConsumerStatus, CredentialOutcome, CredentialStatus, StatusReport,
};
use secret_rotator::statuspage::render;

const GREEN: [u8; 3] = [0x2e, 0x7d, 0x32];
const AMBER: [u8; 3] = [0xf9, 0xa8, 0x25];
const RED: [u8; 3] = [0xc6, 0x28, 0x28];
const TRACK: [u8; 3] = [0xe8, 0xe8, 0xe8];
/// The timeline's horizon in `statuspage.rs`.
const HORIZON_DAYS: f64 = 180.0;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 30, 0).unwrap()
}

fn consumer(description: &str, in_sync: Option<bool>) -> ConsumerStatus {
    ConsumerStatus {
        description: description.into(),
        in_sync,
        detail: None,
    }
}

fn credential(name: &str, app: &str, days_left: i64) -> CredentialStatus {
    CredentialStatus {
        name: name.into(),
        app_id: Some("6f1c2a4e-0d7b-4c52-9a51-3f0e8e2b7c11".into()),
        display_name: Some(app.into()),
        key_id_in_use: Some("0b5e1f7a-9c3d-4e2b-8a6f-1d2c3b4a5e6f".into()),
        key_id_source: Some("customKeyIdentifier".into()),
        expires: Some(now() + Duration::days(days_left)),
        days_left: Some(days_left),
        last_rotation: None,
        phase: Some("settled".into()),
        consumers_in_sync: true,
        consumers: vec![],
        next_due: None,
        problem: None,
        last_outcome: Some(CredentialOutcome::Idle),
    }
}

/// Rows in this order: healthy, warning, expired (problem), failed last run.
fn report() -> StatusReport {
    let mut healthy = credential("orders-api", "Orders API (prod)", 150);
    healthy.consumers = vec![
        consumer(
            "app setting ORDERS_CLIENT_SECRET on func-orders",
            Some(true),
        ),
        consumer("Key Vault reference in web-orders", Some(true)),
    ];
    healthy.last_rotation = Some(now() - Duration::days(30) + Duration::hours(2));
    healthy.last_outcome = Some(CredentialOutcome::Progressed);

    let mut warning = credential("provision-assist", "Provision Assist", 12);
    warning.consumers = vec![consumer("Logic App connection pa-graph", Some(true))];
    warning.last_rotation = Some(now() - Duration::days(168));
    warning.next_due = Some(now() + Duration::hours(20));

    let mut expired = credential("legacy-export", "Legacy Export <batch>", -3);
    expired.phase = None;
    expired.problem =
        Some("Key Vault secret legacy-export-secret is missing (resultCode 24)".into());
    expired.last_outcome = Some(CredentialOutcome::Blocked);

    let mut failed = credential("billing-sync", "Billing Sync", 95);
    failed.phase = Some("consumers-updating".into());
    failed.consumers = vec![
        consumer("app setting BILLING_SECRET on func-billing", Some(true)),
        consumer("AKS secret billing/sync-credentials", Some(false)),
    ];
    failed.consumers_in_sync = false;
    failed.last_rotation = Some(now() - Duration::hours(2));
    failed.last_outcome = Some(CredentialOutcome::Failed);

    StatusReport {
        now: now(),
        credentials: vec![healthy, warning, expired, failed],
        certificates: vec![],
        unenrolled: None,
    }
}

/// The status page rendered to `status.html` in `dir`.
fn write_page(dir: &TempDir) -> (std::path::PathBuf, String) {
    let html = render(&report(), "0.1.0-test");
    let path = dir.path().join("status.html");
    std::fs::write(&path, &html).expect("write status page");
    (path, html)
}

fn require<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A bar fill: a solid block 14 px high (the CSS height; the screenshot is at scale 1) and at
/// least 4 px wide, filling most of its box (rounded corners take a little; the expired bar is a
/// 10 px sliver). Row markers (4 px wide, row-high) and text glyphs do not qualify.
fn is_bar(c: &Component) -> bool {
    (12..=16).contains(&c.height()) && c.width() >= 4 && c.solidity() >= 0.8
}

struct Bar {
    colour: &'static str,
    fill: Component,
    /// Full track width: from the fill's left edge to the grey track's right edge.
    track_width: usize,
}

fn find_bars(img: &Image) -> Vec<Bar> {
    let track: Vec<Component> = img.components(TRACK, 2);
    let mut bars = Vec::new();
    for (colour, rgb) in [("good", GREEN), ("warn", AMBER), ("bad", RED)] {
        for fill in img.components(rgb, 2).into_iter().filter(is_bar) {
            // The grey remainder of the same track: overlapping rows, starting at or before the
            // fill's right edge (rounded corners let it reach under the fill's end).
            let track_x1 = track
                .iter()
                .filter(|t| t.y0 <= fill.center_y() && fill.center_y() <= t.y1)
                .filter(|t| t.x0 <= fill.x1 + 1 && t.x1 > fill.x1)
                .map(|t| t.x1)
                .max()
                .unwrap_or(fill.x1);
            bars.push(Bar {
                colour,
                fill,
                track_width: track_x1 - fill.x0 + 1,
            });
        }
    }
    bars.sort_by_key(|b| b.fill.y0);
    bars
}

#[test]
fn status_page_html_is_self_contained() {
    let html = render(&report(), "0.1.0-test");
    let lower = html.to_ascii_lowercase();
    for needle in ["http://", "https://", "//cdn", "@import", "url("] {
        assert!(
            !lower.contains(needle),
            "status page references an external resource ({needle})"
        );
    }
    assert!(
        html.contains("Legacy Export &lt;batch&gt;"),
        "display names must be escaped"
    );
}

#[test]
fn status_page_screenshot_shows_bars_in_row_colours_and_widths() {
    let dir = TempDir::new("status-page-shot");
    let (page, html) = write_page(&dir);
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "page must work offline"
    );
    let png = match std::env::var_os("STATUS_PAGE_SCREENSHOT") {
        Some(p) => std::path::PathBuf::from(p),
        None => dir.path().join("status.png"),
    };
    let (img, run) = require(browser::screenshot(&page, &png));
    eprintln!(
        "chromium screenshot took {:?}; the trap saw {:?}",
        run.elapsed, run.network
    );
    assert_eq!(
        (img.width, img.height),
        (1280, 800),
        "screenshot is not the window size"
    );
    assert!(
        run.page_requests().is_empty(),
        "the page reached for the network: {:?}",
        run.page_requests()
    );

    // Rendered, not blank: many colours (text antialiasing, fills) and plenty of non-background.
    let colours = img.distinct_colours();
    assert!(
        colours > 50,
        "screenshot looks blank: only {colours} distinct colours"
    );
    let bg = img.pixel(0, 0);
    let inked = (0..img.height)
        .flat_map(|y| (0..img.width).map(move |x| (x, y)))
        .filter(|&(x, y)| img.pixel(x, y) != bg)
        .count();
    assert!(
        inked > img.width * img.height / 20,
        "screenshot nearly empty: {inked} inked pixels"
    );

    let bars = find_bars(&img);
    // For the failure messages: every bar-high block of a bar colour, qualifying or not.
    let candidates: Vec<(&str, Component, f64)> = [("good", GREEN), ("warn", AMBER), ("bad", RED)]
        .into_iter()
        .flat_map(|(n, rgb)| img.components(rgb, 2).into_iter().map(move |c| (n, c)))
        .filter(|(_, c)| (10..=20).contains(&c.height()) && c.width() >= 3)
        .map(|(n, c)| (n, c, c.solidity()))
        .collect();
    let found: Vec<(&str, usize, usize, usize)> = bars
        .iter()
        .map(|b| (b.colour, b.fill.y0, b.fill.width(), b.track_width))
        .collect();
    assert_eq!(
        bars.iter().map(|b| b.colour).collect::<Vec<_>>(),
        ["good", "warn", "bad", "bad"],
        "bar colours top to bottom (colour, y, fill px, track px): {found:?}; bar-high blocks: {candidates:?}"
    );

    // All bars sit in one column: same left edge and the same track width.
    let x0 = bars[0].fill.x0;
    let track = bars[0].track_width;
    assert!(track >= 150, "track suspiciously narrow: {found:?}");
    for b in &bars {
        assert!(
            b.fill.x0.abs_diff(x0) <= 1,
            "bars do not share a left edge: {found:?}"
        );
        assert!(
            b.track_width.abs_diff(track) <= 2,
            "tracks differ in width: {found:?}"
        );
    }
    // Widths follow the days left on a HORIZON_DAYS scale (within 3 px; expired is a sliver).
    let expect = |days: f64| days / HORIZON_DAYS * track as f64;
    for (b, days) in bars.iter().zip([150.0, 12.0, 0.0, 95.0]) {
        let w = b.fill.width() as f64;
        if days > 0.0 {
            assert!(
                (w - expect(days)).abs() <= 3.0,
                "{days}-day bar is {w} px of {track}: {found:?}"
            );
        } else {
            assert!(
                w <= 12.0,
                "expired bar should be a sliver, is {w} px: {found:?}"
            );
        }
    }
    let (healthy, warning, expired) = (&bars[0].fill, &bars[1].fill, &bars[2].fill);
    assert!(
        healthy.width() > warning.width(),
        "healthy bar not wider than warning: {found:?}"
    );
    assert!(
        warning.width() > expired.width(),
        "warning bar not wider than expired: {found:?}"
    );
    // Rows are stacked with room between them.
    for pair in bars.windows(2) {
        assert!(
            pair[1].fill.y0 > pair[0].fill.y1 + 10,
            "bars overlap or touch: {found:?}"
        );
    }

    // Each row's left marker (the first coloured pixel on the bar's scanline) has the bar's
    // colour, so the colour belongs to the row and not only to the bar.
    for b in &bars {
        let y = b.fill.center_y();
        let first = (0..b.fill.x0).map(|x| img.pixel(x, y)).find(|p| {
            [GREEN, AMBER, RED]
                .iter()
                .any(|c| (0..3).all(|i| p[i].abs_diff(c[i]) <= 2))
        });
        let want = match b.colour {
            "good" => GREEN,
            "warn" => AMBER,
            _ => RED,
        };
        let first =
            first.unwrap_or_else(|| panic!("row at y={y} has no coloured marker left of its bar"));
        assert!(
            (0..3).all(|i| first[i].abs_diff(want[i]) <= 2),
            "row at y={y}: marker {first:?} does not match its {} bar",
            b.colour
        );
    }
}

/// Control for the pixel checks: with the healthy fill recoloured (blue) and the warning fill
/// widened to full width, the same bar finder reports exactly that, so the checks above can fail.
#[test]
fn screenshot_check_notices_recoloured_and_resized_bars() {
    let dir = TempDir::new("status-page-control");
    let (_, html) = write_page(&dir);
    let html = html
        .replace(
            ".fill.good{background:#2e7d32}",
            ".fill.good{background:#1565c0}",
        )
        .replace(
            r#"<div class="fill warn" style="width:6.7%">"#,
            r#"<div class="fill warn" style="width:100%">"#,
        );
    assert!(
        !html.contains(".fill.good{background:#2e7d32}") && html.contains("width:100%"),
        "control edit did not apply; update the strings above to match statuspage.rs"
    );
    let page = dir.path().join("control.html");
    std::fs::write(&page, html).unwrap();
    let (img, _) = require(browser::screenshot(&page, &dir.path().join("control.png")));
    let bars = find_bars(&img);
    let colours: Vec<&str> = bars.iter().map(|b| b.colour).collect();
    assert_eq!(
        colours,
        ["warn", "bad", "bad"],
        "recoloured green bar still found"
    );
    assert!(
        bars[0].fill.width().abs_diff(bars[0].track_width) <= 1 && bars[0].fill.width() > 300,
        "full-width warning bar measured {} of {}",
        bars[0].fill.width(),
        bars[0].track_width
    );
}

/// `(data-credential, class)` of each `<tr>` in the table body, in order. String splitting is
/// enough: Chromium serializes the DOM regularly (lower-case tags, attributes quoted with `"`).
fn rows(dom: &str) -> Vec<(String, String)> {
    let body = dom
        .split("<tbody>")
        .nth(1)
        .and_then(|b| b.split("</tbody>").next())
        .unwrap_or("");
    body.split("<tr ")
        .skip(1)
        .map(|tr| {
            let attr = |name: &str| {
                tr.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .unwrap_or("")
                    .to_string()
            };
            (attr("data-credential"), attr("class"))
        })
        .collect()
}

#[test]
fn status_page_dom_has_one_row_per_credential_with_health_class() {
    let dir = TempDir::new("status-page-dom");
    let (page, _) = write_page(&dir);
    let (dom, run) = require(browser::dump_dom(&page));
    assert!(
        run.page_requests().is_empty(),
        "the page reached for the network: {:?}",
        run.page_requests()
    );
    assert!(
        dom.contains("<title>secret-rotator status</title>"),
        "not the status page: {dom:.400}"
    );
    assert_eq!(
        rows(&dom),
        [
            ("orders-api".to_string(), "good".to_string()),
            ("provision-assist".into(), "warn".into()),
            ("legacy-export".into(), "bad".into()),
            ("billing-sync".into(), "bad".into()),
        ],
        "rows in the parsed DOM"
    );
    // The escaped display name survived parsing as text, not as an element.
    assert!(
        dom.contains("Legacy Export &lt;batch&gt;"),
        "display name not escaped in DOM"
    );
    assert!(!dom.contains("<batch>"), "display name parsed as markup");
    // The failures section names both broken credentials; the recent rotations list is newest first.
    let failures = dom.split("Failures").nth(1).unwrap_or("");
    assert!(
        failures.contains("legacy-export") && failures.contains("billing-sync"),
        "failures: {failures:.600}"
    );
    let recent = dom
        .split("Recent rotations")
        .nth(1)
        .and_then(|s| s.split("</ul>").next())
        .unwrap_or("");
    let order: Vec<usize> = ["billing-sync", "orders-api", "provision-assist"]
        .iter()
        .map(|n| {
            recent
                .find(n)
                .unwrap_or_else(|| panic!("{n} missing from recent rotations: {recent}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "recent rotations not newest first: {recent}"
    );
}

/// Control: the trap does see a page that loads something from the network, so an empty
/// trap in the tests above means something.
#[test]
fn network_trap_catches_a_page_that_fetches() {
    let dir = TempDir::new("status-page-trap");
    let page = dir.path().join("fetches.html");
    std::fs::write(
        &page,
        r#"<!doctype html><html><body><img src="http://status-assets.example.invalid/logo.png"></body></html>"#,
    )
    .unwrap();
    let (_, run) = require(browser::dump_dom(&page));
    assert!(
        run.page_requests()
            .iter()
            .any(|l| l.contains("status-assets.example.invalid")),
        "trap saw {:?}",
        run.network
    );
}

#[test]
fn trap_request_lines_name_their_host() {
    use browser::request_host;
    assert_eq!(
        request_host("CONNECT update.googleapis.com:443 HTTP/1.1"),
        Some("update.googleapis.com")
    );
    assert_eq!(
        request_host("GET http://cdn.example.com/x.css HTTP/1.1"),
        Some("cdn.example.com")
    );
    assert_eq!(
        request_host("GET http://127.0.0.1:8080/ HTTP/1.1"),
        Some("127.0.0.1")
    );
    assert_eq!(request_host("(connection without a request line)"), None);
    assert_eq!(request_host(""), None);
}

#[test]
fn missing_chromium_is_an_error_naming_the_install_command() {
    // The same lookup the tests above go through, on a path that cannot exist (no environment
    // mutation: tests run in parallel).
    let err = browser::locate(std::path::Path::new("/nonexistent/chromium")).unwrap_err();
    assert!(err.contains("apt-get install -y chromium"), "{err}");
    assert!(browser::locate(std::path::Path::new("/bin/sh")).is_ok());
}

/// Two certificate credentials (no secrets): `pa-cert` healthy with 150 days left, `ez-cert`
/// blocked by Key Vault with 20 days left and Azure's text hostile everywhere it can be.
fn certificates_report() -> StatusReport {
    use secret_rotator::engine::report::{
        CertificateStatus, KeyCredentialStatus, KeyRole, PendingState, PendingStatus,
    };
    let cert = |name: &str, days: i64| CertificateStatus {
        name: name.into(),
        app_id: Some("6f1c2a4e-0d7b-4c52-9a51-3f0e8e2b7c11".into()),
        object_id: None,
        vault: "kv-pa".into(),
        certificate: name.into(),
        current_version: Some("0123456789abcdef0123456789abcdef".into()),
        thumbprint: Some("8F99A7BDD171FBA2C5A966F416A9F726394C22BC".into()),
        key_id_in_use: Some("9ffecf4e-7897-4ca3-850b-8c7eac796435".into()),
        not_before: None,
        expires: Some(now() + Duration::days(days)),
        days_left: Some(days),
        phase: Some("retired".into()),
        previous_key_id: None,
        remove_after: None,
        keys: vec![KeyCredentialStatus {
            key_id: "8f16e619-f04e-44c8-a0dc-8c47a3114947".into(),
            thumbprint: None,
            display_name: Some("<img src=x onerror=alert(1)>".into()),
            role: KeyRole::Other,
            start: None,
            end: Some(now() + Duration::days(400)),
            days_left: Some(400),
            expiring: false,
        }],
        keys_by_rotator: 1,
        keys_by_others: 1,
        keys_expiring: 0,
        consumers_in_sync: true,
        consumers: vec![consumer(
            "thumbprint setting WEBSITE_LOAD_CERTIFICATES",
            Some(true),
        )],
        pending: None,
        next_step: None,
        blocked: None,
        held_up: vec![],
        next_due: Some(now() + Duration::days(days - 30)),
        conversion: None,
        problem: None,
        last_outcome: Some(CredentialOutcome::Idle),
    };
    let mut blocked = cert("ez-cert", 20);
    blocked.pending = Some(PendingStatus {
        state: PendingState::Failed,
        requested: None,
        detail: Some("<iframe src=x></iframe> refused".into()),
    });
    blocked.blocked = Some("Key Vault's request failed (<b>issuer</b>)".into());
    StatusReport {
        now: now(),
        credentials: vec![],
        certificates: vec![cert("pa-cert", 150), blocked],
        unenrolled: None,
    }
}

#[test]
fn certificates_section_renders_rows_in_their_colours_with_azures_text_as_text() {
    let dir = TempDir::new("status-page-certs");
    let page = dir.path().join("certs.html");
    std::fs::write(&page, render(&certificates_report(), "0.1.0-test")).unwrap();
    let png = match std::env::var_os("STATUS_PAGE_CERTS_SCREENSHOT") {
        Some(p) => std::path::PathBuf::from(p),
        None => dir.path().join("certs.png"),
    };
    let (img, run) = require(browser::screenshot(&page, &png));
    assert!(
        run.page_requests().is_empty(),
        "the page reached for the network: {:?}",
        run.page_requests()
    );
    let bars = find_bars(&img);
    let found: Vec<(&str, usize, usize, usize)> = bars
        .iter()
        .map(|b| (b.colour, b.fill.y0, b.fill.width(), b.track_width))
        .collect();
    assert_eq!(
        bars.iter().map(|b| b.colour).collect::<Vec<_>>(),
        ["good", "bad"],
        "certificate bars top to bottom: {found:?}"
    );
    let track = bars[0].track_width as f64;
    for (b, days) in bars.iter().zip([150.0, 20.0]) {
        let w = b.fill.width() as f64;
        assert!(
            (w - days / HORIZON_DAYS * track).abs() <= 3.0,
            "{days}-day bar is {w} px of {track}: {found:?}"
        );
    }

    let (dom, _) = require(browser::dump_dom(&page));
    let rows: Vec<(String, String)> = dom
        .split("<tr ")
        .skip(1)
        .filter(|tr| tr.contains("data-certificate=\""))
        .map(|tr| {
            let attr = |n: &str| {
                tr.split(&format!("{n}=\""))
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .unwrap_or("")
                    .to_string()
            };
            (attr("data-certificate"), attr("class"))
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("pa-cert".to_string(), "good".to_string()),
            ("ez-cert".into(), "bad".into())
        ]
    );
    // Azure's text stayed text: no element came out of it.
    for markup in ["<img", "<iframe", "<b>issuer"] {
        assert!(!dom.contains(markup), "{markup} parsed as markup");
    }
    assert!(dom.contains("&lt;iframe src=x&gt;&lt;/iframe&gt; refused"));
    assert!(dom.contains("8F99A7BDD171FBA2C5A966F416A9F726394C22BC"));
}

//! The status page: one self-contained HTML document (no external assets, works offline) with
//! every enrolled credential on a timeline of days left, the certificate credentials (the
//! `certificates` submodule), the recent rotations, the failures and the credentials nobody
//! rotates that expire soonest.
//!
//! Rendered from the same [`StatusReport`] the `Status` command returns, so the page can never
//! disagree with the API. Every dynamic string goes through [`esc`].

use std::fmt::Write;

use crate::engine::report::{ConsumerStatus, CredentialOutcome, CredentialStatus, StatusReport};

mod certificates;

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The horizon of the timeline, in days.
pub(crate) const HORIZON_DAYS: i64 = 180;

pub(crate) fn health(
    days_left: Option<i64>,
    problem: bool,
    outcome: Option<CredentialOutcome>,
) -> &'static str {
    if problem
        || matches!(
            outcome,
            Some(CredentialOutcome::Failed | CredentialOutcome::Blocked)
        )
    {
        return "bad";
    }
    match days_left {
        Some(d) if d < 0 => "bad",
        Some(d) if d < 30 => "warn",
        Some(_) => "good",
        None => "bad",
    }
}

/// The word on a row's badge: why it has its colour, so red for "expired" and red for "the last
/// run failed" read differently.
pub(crate) fn state_label(
    days_left: Option<i64>,
    problem: bool,
    outcome: Option<CredentialOutcome>,
) -> &'static str {
    match (days_left, problem, outcome) {
        (Some(d), _, _) if d < 0 => "expired",
        (_, true, _) => "problem",
        (_, _, Some(CredentialOutcome::Failed)) => "last run failed",
        (_, _, Some(CredentialOutcome::Blocked)) => "blocked",
        (None, _, _) => "unknown",
        (Some(d), _, _) if d < 30 => "renew soon",
        _ => "healthy",
    }
}

/// How many recent rotations the page lists.
const RECENT_LIMIT: usize = 10;
/// How many unenrolled credentials the page lists (`Status` has up to its own limit).
const UNENROLLED_LIMIT: usize = 25;

/// The "not enrolled" section: the soonest to expire first, as `Status` sorted them.
fn unenrolled_section(status: &StatusReport) -> String {
    let Some(u) = &status.unenrolled else {
        return String::new();
    };
    let mut rows = String::new();
    for c in u.listed.iter().take(UNENROLLED_LIMIT) {
        let h = match c.days_left {
            Some(d) if d < 0 => "bad",
            Some(d) if d < 30 => "warn",
            _ => "good",
        };
        let _ = writeln!(
            rows,
            r#"<tr class="{h}" data-key-id="{key}"><th scope="row">{app}<div class="sub">{app_id}</div></th><td>{kind}</td><td>{key}<div class="sub">{desc}</div></td><td>{expires}</td></tr>"#,
            app = esc(&c.application),
            app_id = c.app_id,
            kind = match c.kind {
                crate::engine::inventory::CredentialKind::Secret => "secret",
                crate::engine::inventory::CredentialKind::Certificate => "certificate",
            },
            key = c.key_id,
            desc = esc(c.display_name.as_deref().unwrap_or("")),
            expires = match (c.end, c.days_left) {
                (Some(e), Some(d)) if d < 0 =>
                    format!("{} (expired {} days ago)", e.format("%Y-%m-%d"), -d),
                (Some(e), Some(d)) => format!("{} ({d} days left)", e.format("%Y-%m-%d")),
                _ => "never".into(),
            },
        );
    }
    let more = u
        .unenrolled
        .saturating_sub(u.listed.len().min(UNENROLLED_LIMIT));
    let mut note = esc(&u.note);
    if more > 0 {
        let _ = write!(note, " — {more} not shown here");
    }
    if let Some(p) = &u.problem {
        let _ = write!(note, " — {}", esc(p));
    }
    format!(
        r#"<section id="unenrolled"><h2>Not enrolled</h2><p class="sub">{note}</p>{table}</section>"#,
        table = if rows.is_empty() {
            String::new()
        } else {
            format!(
                "<table><thead><tr><th>Application</th><th>Kind</th><th>keyId</th><th>Expires</th></tr></thead><tbody>\n{rows}</tbody></table>"
            )
        }
    )
}

pub fn render(status: &StatusReport, app_version: &str) -> String {
    let mut rows: String = status.credentials.iter().map(credential_row).collect();
    if rows.is_empty() {
        rows = "<tr><td colspan=\"4\" class=\"sub\">No client-secret credential is enrolled.</td></tr>\n".into();
    }
    let certificates = certificates::section(status);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>secret-rotator status</title>
<style>
{STYLE}</style></head>
<body>
<h1>secret-rotator</h1>
<div class="meta">version {ver} · as of {now} · timeline spans {HORIZON_DAYS} days</div>
<p class="summary">{summary}</p>
<table><thead><tr><th>Credential</th><th>Days left (0–{HORIZON_DAYS})</th><th>Consumers</th><th>Phase</th></tr></thead>
<tbody>
{rows}</tbody></table>
{certificates}<section><h2>Recent rotations</h2><ul>{recent_html}</ul></section>
<section><h2>Failures</h2>{failures_html}</section>
{unenrolled}
</body></html>
"#,
        summary = summary(status),
        recent_html = recent_rotations(status),
        failures_html = failures(status),
        unenrolled = unenrolled_section(status),
        ver = esc(app_version),
        now = status.now.format("%Y-%m-%d %H:%M UTC"),
    )
}

/// The page's style sheet (inline: the page loads nothing else).
const STYLE: &str = r#"body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1b1b1b;background:#fafafa}
h1{font-size:1.4rem;margin:0 0 .2rem} .meta{color:#555;margin-bottom:1.5rem}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 3px #0002}
th,td{text-align:left;padding:.6rem .8rem;border-bottom:1px solid #eee;vertical-align:top}
thead th{background:#f0f0f0;font-size:.85rem;text-transform:uppercase;letter-spacing:.03em}
.sub{color:#666;font-size:.8rem;font-weight:400;margin-top:.2rem}
.bar{background:#e8e8e8;border-radius:3px;height:14px;width:100%;min-width:200px}
.fill{height:14px;border-radius:3px;min-width:10px} .fill.good{background:#2e7d32} .fill.warn{background:#f9a825} .fill.bad{background:#c62828}
tr.bad th{border-left:4px solid #c62828} tr.warn th{border-left:4px solid #f9a825} tr.good th{border-left:4px solid #2e7d32}
.pill{display:inline-block;font-size:.7rem;font-weight:600;padding:.05rem .45rem;border-radius:.6rem;margin-left:.3rem;vertical-align:.1rem}
.pill.good{background:#e8f5e9;color:#1b5e20} .pill.warn{background:#fff4d6;color:#6d4c00} .pill.bad{background:#fdecea;color:#8e1b1b}
.summary{margin:0 0 1rem;font-size:.95rem} .dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin:0 .35rem 0 1rem;vertical-align:0}
.summary .dot:first-child{margin-left:0} .dot.good{background:#2e7d32} .dot.warn{background:#f9a825} .dot.bad{background:#c62828}
h2{font-size:1.1rem;margin:0 0 .4rem} ul{margin:0;padding-left:1.3rem} li{margin:.15rem 0}
section{margin-top:1.5rem} .failures li{color:#c62828} .ok{color:#2e7d32}
"#;

/// How many credentials are healthy, to renew soon, and in need of attention.
fn summary(status: &StatusReport) -> String {
    let mut counts = [0usize; 3];
    let secrets = status
        .credentials
        .iter()
        .map(|c| health(c.days_left, c.problem.is_some(), c.last_outcome));
    for h in secrets.chain(status.certificates.iter().map(certificates::health_of)) {
        counts[match h {
            "good" => 0,
            "warn" => 1,
            _ => 2,
        }] += 1;
    }
    format!(
        r#"<span class="dot good"></span>{} healthy <span class="dot warn"></span>{} to renew within 30 days <span class="dot bad"></span>{} need attention"#,
        counts[0], counts[1], counts[2]
    )
}

/// One credential on the timeline: its health, days left, consumers and phase.
fn credential_row(c: &CredentialStatus) -> String {
    let h = health(c.days_left, c.problem.is_some(), c.last_outcome);
    let state = state_label(c.days_left, c.problem.is_some(), c.last_outcome);
    format!(
        r#"<tr class="{h}" data-credential="{name}"><th scope="row">{name} <span class="pill {h}">{state}</span><div class="sub">{app}</div></th>
{timeline}
<td>{consumers}</td><td>{phase}</td></tr>
"#,
        name = esc(&c.name),
        app = esc(c.display_name.as_deref().unwrap_or("")),
        timeline = timeline_cell(h, c.days_left, c.expires),
        consumers = consumers_text(c.consumers_in_sync, &c.consumers),
        phase = esc(c.phase.as_deref().unwrap_or("-")),
    )
}

/// The days-left bar and its caption, coloured by health `h`.
pub(crate) fn timeline_cell(
    h: &str,
    days_left: Option<i64>,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let days = days_left.unwrap_or(0).clamp(0, HORIZON_DAYS);
    let width = (days as f64 / HORIZON_DAYS as f64 * 100.0).max(1.0);
    let days_text = match days_left {
        Some(d) if d < 0 => format!("expired {} days ago", -d),
        Some(d) => format!("{d} days left"),
        None => "unknown".into(),
    };
    let expires = expires
        .map(|e| format!(" · expires {}", e.format("%Y-%m-%d")))
        .unwrap_or_default();
    format!(
        r#"<td><div class="bar" role="img" aria-label="{days_text}"><div class="fill {h}" style="width:{width:.1}%"></div></div><div class="sub">{days_text}{expires}</div></td>"#
    )
}

/// Where a credential's consumers stand.
pub(crate) fn consumers_text(in_sync: bool, consumers: &[ConsumerStatus]) -> String {
    if consumers.is_empty() {
        "Key Vault only".to_string()
    } else if in_sync {
        match consumers.len() {
            1 => "1 consumer in sync".to_string(),
            n => format!("{n} consumers in sync"),
        }
    } else {
        format!(
            "{} of {} consumers out of sync",
            consumers
                .iter()
                .filter(|x| x.in_sync == Some(false))
                .count(),
            consumers.len()
        )
    }
}

/// The credentials with a problem or whose last run did not finish.
fn failures(status: &StatusReport) -> String {
    let mut failures = String::new();
    for c in &status.credentials {
        if let Some(p) = &c.problem {
            let _ = write!(failures, "<li><b>{}</b>: {}</li>", esc(&c.name), esc(p));
        } else if matches!(
            c.last_outcome,
            Some(CredentialOutcome::Failed | CredentialOutcome::Blocked)
        ) {
            let _ = write!(
                failures,
                "<li><b>{}</b>: the last run did not finish; see Status</li>",
                esc(&c.name)
            );
        }
    }
    failures.push_str(&certificates::failures(status));
    if failures.is_empty() {
        "<p class=\"ok\">No failures.</p>".to_string()
    } else {
        format!("<ul class=\"failures\">{failures}</ul>")
    }
}

/// The latest rotations, newest first.
fn recent_rotations(status: &StatusReport) -> String {
    let mut recent: Vec<(String, String)> = status
        .credentials
        .iter()
        .filter_map(|c| c.last_rotation.map(|r| (r.to_rfc3339(), c.name.clone())))
        .collect();
    recent.sort();
    recent.reverse();
    recent.truncate(RECENT_LIMIT);
    if recent.is_empty() {
        return "<li>none yet</li>".into();
    }
    recent
        .iter()
        .map(|(at, n)| {
            format!(
                "<li>{} UTC — {}</li>",
                esc(&at[..16.min(at.len())].replace('T', " ")),
                esc(n)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(name: &str, days: Option<i64>, problem: Option<&str>) -> CredentialStatus {
        CredentialStatus {
            name: name.into(),
            app_id: None,
            display_name: Some("<script>alert(1)</script>".into()),
            key_id_in_use: None,
            key_id_source: None,
            expires: None,
            days_left: days,
            last_rotation: None,
            phase: Some("retired".into()),
            consumers_in_sync: true,
            consumers: vec![],
            next_due: None,
            problem: problem.map(str::to_string),
            last_outcome: None,
        }
    }

    #[test]
    fn lists_the_unenrolled_credentials_escaped_and_bounded() {
        let now = chrono::Utc::now();
        let mut soonest = crate::engine::inventory::SoonestUnenrolled::new(200);
        for i in 0..30u128 {
            let app = crate::planner::AppState {
                object_id: uuid::Uuid::from_u128(i + 100),
                app_id: uuid::Uuid::from_u128(i),
                display_name: format!("<b>app {i}</b>"),
                passwords: vec![crate::planner::PasswordInfo {
                    key_id: uuid::Uuid::from_u128(i + 1000),
                    display_name: None,
                    hint: None,
                    start: None,
                    end: Some(now + chrono::Duration::days(i as i64 - 2)),
                }],
            };
            for r in crate::engine::inventory::rows_for_app(
                &app,
                &[],
                &crate::engine::inventory::Enrolment::default(),
                now,
            ) {
                soonest.add(&r);
            }
        }
        let s = StatusReport {
            now,
            credentials: vec![],
            certificates: vec![],
            unenrolled: Some(soonest.finish(Default::default(), None)),
        };
        let html = render(&s, "1.0.0");
        assert!(html.contains(r#"<section id="unenrolled"><h2>Not enrolled</h2>"#));
        assert!(html.contains("&lt;b&gt;app 0&lt;/b&gt;") && !html.contains("<b>app"));
        assert_eq!(html.matches("data-key-id=").count(), UNENROLLED_LIMIT);
        assert!(
            html.contains("5 not shown here"),
            "30 listed by Status, 25 here"
        );
        assert!(html.contains("(expired 2 days ago)"), "soonest first");
        // Without an inventory (the engine unavailable) there is no section at all.
        let none = StatusReport {
            now,
            credentials: vec![],
            certificates: vec![],
            unenrolled: None,
        };
        assert!(!render(&none, "1.0.0").contains("Not enrolled"));
    }

    #[test]
    fn escapes_everything_and_marks_health() {
        let s = StatusReport {
            now: chrono::Utc::now(),
            unenrolled: None,
            certificates: vec![],
            credentials: vec![
                cred("good-one", Some(120), None),
                cred("late", Some(-3), Some("expired")),
            ],
        };
        let html = render(&s, "1.0.0");
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains(r#"<tr class="good" data-credential="good-one">"#));
        assert!(html.contains(r#"<tr class="bad" data-credential="late">"#));
        assert!(html.contains("expired 3 days ago"));
        // No external assets: the page must work offline.
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn badges_say_why_a_row_has_its_colour_and_summary_counts_rows() {
        let mut failed = cred("failed-run", Some(95), None);
        failed.last_outcome = Some(CredentialOutcome::Failed);
        let mut two = cred("two-consumers", Some(12), None);
        two.consumers = vec![
            crate::engine::report::ConsumerStatus {
                description: "a".into(),
                in_sync: Some(true),
                detail: None,
            };
            2
        ];
        let s = StatusReport {
            now: chrono::Utc::now(),
            unenrolled: None,
            certificates: vec![],
            credentials: vec![
                cred("fine", Some(150), None),
                two,
                cred("gone", Some(-1), Some("expired")),
                failed,
                cred("odd", None, None),
            ],
        };
        let html = render(&s, "1.0.0");
        for (class, label) in [
            ("good", "healthy"),
            ("warn", "renew soon"),
            ("bad", "expired"),
            ("bad", "last run failed"),
            ("bad", "unknown"),
        ] {
            assert!(
                html.contains(&format!(r#"<span class="pill {class}">{label}</span>"#)),
                "no {class} badge {label}"
            );
        }
        assert!(html.contains("2 consumers in sync"));
        assert!(html.contains(r#"</span>1 healthy "#));
        assert!(html.contains(r#"</span>1 to renew within 30 days "#));
        assert!(html.contains(r#"</span>3 need attention"#));
    }
}

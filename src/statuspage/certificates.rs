//! The status page's certificates section: one row per enrolled certificate credential (its
//! version's days left, the Key Vault certificate and thumbprint, the application's key
//! credentials, consumers, conversion, phase and what happens next), in the same style as the
//! secrets' timeline. Every string from Azure (display names, Key Vault's and Graph's words in
//! `blocked`/`pending`) goes through [`esc`].

use std::fmt::Write;

use super::{consumers_text, esc, health, state_label, timeline_cell};
use crate::engine::report::{
    CertificateStatus, ConversionState, CredentialOutcome, KeyRole, PendingState, StatusReport,
};

/// Whether a person must look: a problem reading it, or the planner is blocked.
fn needs_person(c: &CertificateStatus) -> bool {
    c.problem.is_some() || c.blocked.is_some()
}

/// The row's colour, as the secrets' rows get theirs.
pub(super) fn health_of(c: &CertificateStatus) -> &'static str {
    health(c.days_left, needs_person(c), c.last_outcome)
}

/// The section, or nothing when no certificate credential is enrolled (the page stays as it
/// was for a secrets-only policy).
pub(super) fn section(status: &StatusReport) -> String {
    if status.certificates.is_empty() {
        return String::new();
    }
    let rows: String = status.certificates.iter().map(row).collect();
    format!(
        r#"<section id="certificates"><h2>Certificates</h2>
<table><thead><tr><th>Certificate credential</th><th>Days left (0–{days})</th><th>Key Vault and keys</th><th>Consumers</th><th>Phase</th></tr></thead>
<tbody>
{rows}</tbody></table></section>
"#,
        days = super::HORIZON_DAYS
    )
}

fn row(c: &CertificateStatus) -> String {
    let h = health_of(c);
    // A blocked planner reads "blocked", like a secret whose last run was blocked.
    let state = match (&c.blocked, &c.problem) {
        (Some(_), None) if c.days_left.is_none_or(|d| d >= 0) => "blocked",
        _ => state_label(c.days_left, needs_person(c), c.last_outcome),
    };
    let app = c.app_id.as_deref().unwrap_or("");
    format!(
        r#"<tr class="{h}" data-certificate="{name}"><th scope="row">{name} <span class="pill {h}">{state}</span><div class="sub">{app}</div></th>
{timeline}
<td>{vault}</td><td>{consumers}</td><td>{phase}</td></tr>
"#,
        name = esc(&c.name),
        app = esc(app),
        timeline = timeline_cell(h, c.days_left, c.expires),
        vault = vault_cell(c),
        consumers = consumers_cell(c),
        phase = phase_cell(c),
    )
}

/// The certificate, its current version and thumbprint, and the application's keys.
fn vault_cell(c: &CertificateStatus) -> String {
    let mut out = format!("{}/{}", esc(&c.vault), esc(&c.certificate));
    match (&c.current_version, &c.thumbprint) {
        (Some(v), Some(t)) => {
            let _ = write!(
                out,
                r#"<div class="sub">version {} · thumbprint <span data-thumbprint>{}</span></div>"#,
                esc(v),
                esc(t)
            );
        }
        _ => out.push_str(r#"<div class="sub">no current version</div>"#),
    }
    let _ = write!(
        out,
        r#"<div class="sub">{} key(s) on the application: {} kept by the rotator, {} added by others{}</div>"#,
        c.keys.len(),
        c.keys_by_rotator,
        c.keys_by_others,
        match c.keys_expiring {
            0 => String::new(),
            n => format!(", {n} expiring within 30 days"),
        }
    );
    for k in &c.keys {
        let role = match k.role {
            KeyRole::InUse => "in use",
            KeyRole::Previous => "previous",
            KeyRole::Rotator => "rotator's",
            KeyRole::Other => "other",
        };
        let ends = k
            .end
            .map(|e| format!(" · ends {}", e.format("%Y-%m-%d")))
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<div class="sub" data-key-id="{id}">{id} ({role}){ends} {name}</div>"#,
            id = esc(&k.key_id),
            name = esc(k.display_name.as_deref().unwrap_or("")),
        );
    }
    out
}

/// The consumers' sync, those held up, and the conversion's progress.
fn consumers_cell(c: &CertificateStatus) -> String {
    let mut out = consumers_text(c.consumers_in_sync, &c.consumers);
    for x in c.consumers.iter().filter(|x| x.in_sync != Some(true)) {
        let _ = write!(
            out,
            r#"<div class="sub">{}: {}</div>"#,
            esc(&x.description),
            esc(x.detail.as_deref().unwrap_or("not known to hold it"))
        );
    }
    for h in &c.held_up {
        let _ = write!(out, r#"<div class="sub">held up: {}</div>"#, esc(h));
    }
    if let Some(conv) = &c.conversion {
        let state = match (conv.state, conv.remove_after) {
            (ConversionState::Waiting, _) => format!(
                "{} of {} of its consumers still on it",
                conv.still_on_secret,
                conv.consumers.len()
            ),
            (ConversionState::SecretReleased, Some(at)) => {
                format!(
                    "every consumer moved; removed after {}",
                    at.format("%Y-%m-%d")
                )
            }
            (ConversionState::SecretReleased, None) => "every consumer moved".into(),
            (ConversionState::Converted, _) => "converted: the secret is gone".into(),
        };
        let _ = write!(
            out,
            r#"<div class="sub" data-conversion>replaces secret {}: {state}</div>"#,
            esc(&conv.secret)
        );
        for x in conv.consumers.iter().filter(|x| x.moved != Some(true)) {
            let _ = write!(
                out,
                r#"<div class="sub">still on the secret: {}</div>"#,
                esc(&x.description)
            );
        }
    }
    out
}

/// The phase, a pending Key Vault operation, and what comes next or why nothing can.
fn phase_cell(c: &CertificateStatus) -> String {
    let mut out = esc(c.phase.as_deref().unwrap_or("-"));
    if let Some(p) = &c.pending {
        let what = match p.state {
            PendingState::InProgress => "a new version is being issued".to_string(),
            PendingState::Failed => format!(
                "Key Vault's request failed: {}",
                p.detail.as_deref().unwrap_or("no detail")
            ),
        };
        let _ = write!(out, r#"<div class="sub">{}</div>"#, esc(&what));
    }
    if let Some(b) = &c.blocked {
        let _ = write!(out, r#"<div class="sub">blocked: {}</div>"#, esc(b));
    } else if let Some(s) = &c.next_step {
        let _ = write!(out, r#"<div class="sub">next: {}</div>"#, esc(s));
    } else if let Some(d) = c.next_due {
        let _ = write!(
            out,
            r#"<div class="sub">next check {}</div>"#,
            d.format("%Y-%m-%d %H:%M UTC")
        );
    }
    out
}

/// The certificate credentials for the failures list.
pub(super) fn failures(status: &StatusReport) -> String {
    let mut out = String::new();
    for c in &status.certificates {
        if let Some(why) = c.problem.as_ref().or(c.blocked.as_ref()) {
            let _ = write!(out, "<li><b>{}</b>: {}</li>", esc(&c.name), esc(why));
        } else if matches!(
            c.last_outcome,
            Some(CredentialOutcome::Failed | CredentialOutcome::Blocked)
        ) {
            let _ = write!(
                out,
                "<li><b>{}</b>: the last run did not finish; see Status</li>",
                esc(&c.name)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::usecase::certificate_status::example as cert;
    use chrono::{Duration, Utc};

    fn report(certificates: Vec<CertificateStatus>) -> StatusReport {
        StatusReport {
            now: Utc::now(),
            credentials: vec![],
            certificates,
            unenrolled: None,
        }
    }

    #[test]
    fn the_section_escapes_text_from_azure_and_says_what_holds_it() {
        let html = super::super::render(&report(vec![cert("pa-cert")]), "1.0.0");
        for raw in [
            "<script>",
            "<img",
            "<iframe",
            "<b>DigiCert",
            "<gone>",
            "<old>",
        ] {
            assert!(!html.contains(raw), "{raw} reached the page unescaped");
        }
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
        assert!(html.contains("CA said &lt;iframe src=//evil&gt;"));
        assert!(html.contains(r#"<tr class="bad" data-certificate="pa-cert">"#));
        assert!(html.contains(r#"<span class="pill bad">blocked</span>"#));
        assert!(html.contains(&"AB".repeat(20)), "thumbprint shown");
        assert!(html.contains("1 kept by the rotator, 1 added by others, 1 expiring"));
        assert!(html.contains("replaces secret pa: 1 of 1 of its consumers still on it"));
        assert!(html.contains("<li><b>pa-cert</b>: Key Vault&#39;s request failed"));
        assert!(
            html.contains(r#"</span>1 need attention"#),
            "counted in the summary"
        );
        assert!(html.contains("No client-secret credential is enrolled."));
    }

    #[test]
    fn a_settled_certificate_is_green_and_no_certificates_means_no_section() {
        let mut c = cert("fine");
        c.blocked = None;
        c.pending = None;
        c.consumers_in_sync = true;
        c.consumers[0].in_sync = Some(true);
        c.next_due = Some(Utc::now() + Duration::days(60));
        let html = super::super::render(&report(vec![c]), "1.0.0");
        assert!(html.contains(r#"<tr class="good" data-certificate="fine">"#));
        assert!(html.contains("1 consumer in sync") && html.contains("next check"));
        assert!(html.contains("No failures."));
        assert!(!super::super::render(&report(vec![]), "1.0.0").contains("Certificates"));
    }
}

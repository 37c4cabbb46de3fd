//! `plan` (what the next pass would do and why; reads only) and `rotate` (one pass, or one
//! credential, printing each step done). Both render the engine's own reports: JSON as-is for
//! tools, or a few indented lines per credential for people.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{CliError, Connection};
use crate::engine::report::{CredentialOutcome, CredentialReport, PassReport, PlanReport};

/// `secret-rotator plan`: observes every enrolled credential and asks the planner, performing
/// nothing (the engine's `plan_report` only reads Graph, Key Vault and the consumers).
pub async fn plan(conn: &Connection, now: DateTime<Utc>) -> PlanReport {
    conn.engine.plan_report(now).await
}

pub fn render_plan(report: &PlanReport, json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report).map_err(std::io::Error::other)?;
        return writeln!(out);
    }
    writeln!(
        out,
        "Plan as of {} ({} credential(s) enrolled); nothing has been changed.",
        report.now.format("%Y-%m-%d %H:%M UTC"),
        report.credentials.len()
    )?;
    for c in &report.credentials {
        writeln!(out)?;
        let headline = match (&c.blocked, c.steps.is_empty()) {
            (Some(_), _) => "blocked: needs a person",
            (None, true) => "nothing to do",
            (None, false) => "would act",
        };
        writeln!(out, "{}: {headline}", c.name)?;
        for e in &c.explanation {
            writeln!(out, "  why:   {e}")?;
        }
        for (i, s) in c.steps.iter().enumerate() {
            writeln!(out, "  step {}: {s}", i + 1)?;
        }
        if let Some(b) = &c.blocked {
            writeln!(out, "  blocked: {b}")?;
        }
        if let Some(d) = c.next_due {
            writeln!(out, "  next due: {}", d.format("%Y-%m-%d %H:%M UTC"))?;
        }
    }
    Ok(())
}

/// What `rotate` did: one credential (`--only`) or a whole pass.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum RotateResult {
    One(CredentialReport),
    Pass(PassReport),
}

impl RotateResult {
    pub fn credentials(&self) -> &[CredentialReport] {
        match self {
            RotateResult::One(r) => std::slice::from_ref(r),
            RotateResult::Pass(p) => &p.credentials,
        }
    }

    /// True when any credential failed or is blocked (the exit code is then non-zero).
    pub fn any_failed(&self) -> bool {
        self.credentials().iter().any(|c| {
            matches!(
                c.outcome,
                CredentialOutcome::Failed | CredentialOutcome::Blocked
            )
        })
    }
}

/// `secret-rotator rotate`: `only` = one credential by policy name (`force` rotates it even when
/// nothing is due); otherwise one pass over every credential within `budget`.
pub async fn rotate(
    conn: &Connection,
    only: Option<&str>,
    force: bool,
    now: DateTime<Utc>,
    budget: Duration,
) -> Result<RotateResult, CliError> {
    let Some(name) = only else {
        return Ok(RotateResult::Pass(conn.engine.pass(now, budget).await));
    };
    let policy = conn.policy();
    let run_id = format!(
        "cli-{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    if let Some(cert) = policy.certificates.iter().find(|c| c.name == name) {
        return Ok(RotateResult::One(
            conn.engine.run_certificate(cert, now, None, &run_id).await,
        ));
    }
    let Some(cred) = policy.credentials.iter().find(|c| c.name == name) else {
        return Err(CliError::UnknownCredential {
            name: name.to_string(),
            known: policy
                .credentials
                .iter()
                .map(|c| c.name.as_str())
                .chain(policy.certificates.iter().map(|c| c.name.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    if let Some(report) = conn.engine.replaced_by_certificate(cred).await {
        return Ok(RotateResult::One(report));
    }
    Ok(RotateResult::One(
        conn.engine
            .run_credential(cred, now, force, None, &run_id)
            .await,
    ))
}

fn outcome_word(o: CredentialOutcome) -> &'static str {
    match o {
        CredentialOutcome::Idle => "nothing was due",
        CredentialOutcome::Progressed => "done",
        CredentialOutcome::InProgress => "in progress (the next run continues)",
        CredentialOutcome::Blocked => "BLOCKED (needs a person)",
        CredentialOutcome::Failed => "FAILED (the next run resumes from here)",
        CredentialOutcome::Busy => "busy (another instance holds its lease)",
        CredentialOutcome::Refused => "forced rotation refused",
    }
}

pub fn render_rotate(
    result: &RotateResult,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, result).map_err(std::io::Error::other)?;
        return writeln!(out);
    }
    if let RotateResult::Pass(p) = result {
        writeln!(out, "Run {}", p.run_id)?;
    }
    for c in result.credentials() {
        writeln!(out, "{}: {}", c.name, outcome_word(c.outcome))?;
        for s in &c.steps {
            writeln!(
                out,
                "  {} {} {}: {}",
                if s.ok { "ok  " } else { "FAIL" },
                s.at.format("%H:%M:%S"),
                s.step,
                s.detail
            )?;
        }
        if let Some(e) = &c.error {
            writeln!(out, "  error: {e}")?;
        }
        if let Some(d) = c.next_due {
            writeln!(out, "  next due: {}", d.format("%Y-%m-%d %H:%M UTC"))?;
        }
    }
    if let RotateResult::Pass(p) = result
        && !p.deferred.is_empty()
    {
        writeln!(
            out,
            "not reached within the pass budget (the next run takes them): {}",
            p.deferred.join(", ")
        )?;
    }
    if let RotateResult::Pass(p) = result
        && let Some(u) = &p.unenrolled
    {
        writeln!(out, "{}", u.line())?;
    }
    Ok(())
}

//! Use case: the scans for credentials nobody rotates — the pass's warnings
//! ([`Engine::warn_unenrolled`]) and `Status`'s bounded inventory
//! ([`Engine::unenrolled_inventory`]). Both read the tenant through
//! [`crate::engine::inventory::InventoryScan`], told which passwords are enrolled by the
//! credentials' observations ([`learn_enrolment`]; [`learn_certificate`] for certificate
//! credentials).
//!
//! Guarantees: a scan stops at its deadline and answers with what it read; a failed page or
//! notification is a warning or a `problem` in the answer, never an error of the use case
//! around it. Each expiring credential is told at most once a day (the notifier's store).

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::engine::context::{Clock, Engine};
use crate::engine::inventory::{
    Enrolment, InventoryScan, ScanOptions, ScanSummary, SoonestUnenrolled, UnenrolledInventory,
    warns,
};
use crate::engine::observe::Observed;
use crate::engine::report::UnenrolledScanReport;
use crate::planner::certificate::{CertObservation, CertVaultState};
use crate::planner::{KeyIdentity, VaultState};
use crate::policy::{CertificateCredentialPolicy, CredentialPolicy};

impl Engine {
    /// Scans the tenant for credentials nobody rotates that expire within
    /// `warn_unenrolled_days` and sends each its message (deduplicated per credential and day
    /// by the notifier's store). Stops at `deadline`.
    pub(crate) async fn warn_unenrolled(
        &self,
        enrolment: &Enrolment,
        clock: Clock,
        deadline: Instant,
    ) -> UnenrolledScanReport {
        let opts = ScanOptions {
            owned_only: false,
            page_size: self.options.scan_page_size,
            deadline: Some(deadline),
        };
        let mut scan = InventoryScan::new(self.azure.as_ref(), enrolment, opts, clock.now());
        let mut report = UnenrolledScanReport {
            warn_days: self.options.warn_unenrolled_days,
            scan: ScanSummary::default(),
            expiring: 0,
            notified: 0,
            already_sent_today: 0,
            warning: None,
        };
        let mut send_failures = Vec::new();
        loop {
            let rows = match scan.next_page().await {
                Ok(Some(rows)) => rows,
                Ok(None) => break,
                Err(e) => {
                    report.warning = Some(format!(
                        "the scan for unenrolled credentials failed after {} page(s): {e}",
                        scan.summary().pages
                    ));
                    break;
                }
            };
            log_notes(&mut scan);
            for row in rows
                .iter()
                .filter(|r| warns(r, clock.now(), report.warn_days))
            {
                report.expiring += 1;
                if Instant::now() >= deadline {
                    continue; // counted; told on the next pass
                }
                match self.notifier.expiring_unenrolled(row, clock.now()).await {
                    Ok(true) => report.notified += 1,
                    Ok(false) => report.already_sent_today += 1,
                    Err(e) => send_failures.push(format!("{}/{}: {e}", row.app_id, row.key_id)),
                }
            }
        }
        log_notes(&mut scan);
        report.scan = scan.summary().clone();
        add_send_failures(&mut report, &send_failures);
        if let Some(w) = &report.warning {
            tracing::warn!("{w}");
        }
        report
    }

    /// The visible applications' credentials that nobody rotates, soonest expiry first
    /// (bounded to `status_inventory_limit` rows and `status_scan_budget`).
    pub(crate) async fn unenrolled_inventory(
        &self,
        enrolment: &Enrolment,
        now: DateTime<Utc>,
    ) -> UnenrolledInventory {
        let opts = ScanOptions {
            owned_only: false,
            page_size: self.options.scan_page_size,
            deadline: Some(Instant::now() + self.options.status_scan_budget),
        };
        let mut scan = InventoryScan::new(self.azure.as_ref(), enrolment, opts, now);
        let mut soonest = SoonestUnenrolled::new(self.options.status_inventory_limit);
        let problem = loop {
            match scan.next_page().await {
                Ok(Some(rows)) => rows.iter().for_each(|r| soonest.add(r)),
                Ok(None) => break None,
                Err(e) => {
                    break Some(format!(
                        "the scan failed after {} page(s): {e}",
                        scan.summary().pages
                    ));
                }
            }
        };
        soonest.finish(scan.summary().clone(), problem)
    }
}

fn log_notes(scan: &mut InventoryScan<'_>) {
    for note in scan.take_notes() {
        tracing::info!("unenrolled scan: {note}");
    }
}

/// Adds the notifications that could not be sent to the report's warning.
fn add_send_failures(report: &mut UnenrolledScanReport, send_failures: &[String]) {
    if send_failures.is_empty() {
        return;
    }
    let failed = format!(
        "{} notification(s) about expiring unenrolled credentials could not be sent: {}",
        send_failures.len(),
        send_failures.join("; ")
    );
    report.warning = Some(match report.warning.take() {
        Some(w) => format!("{w}; {failed}"),
        None => failed,
    });
}

/// Records which password `cred`'s vault holds (and which one its last rotation replaced), as
/// observed, for telling enrolled credentials from the rest.
pub(crate) fn learn_enrolment(enrolment: &mut Enrolment, cred: &CredentialPolicy, seen: &Observed) {
    if let VaultState::Current(v) = &seen.observation.vault {
        let current = match &v.identity {
            KeyIdentity::Tagged(k) | KeyIdentity::InferredFromHint(k) => Some(*k),
            KeyIdentity::Unknown { .. } => None,
        };
        enrolment.observed(
            &cred.name,
            current,
            v.tags.as_ref().and_then(|t| t.previous_key_id),
            format!("{}/{}", cred.key_vault.vault, cred.key_vault.secret),
        );
    }
}

/// Tells the inventory which keys a certificate credential keeps: the current version's key
/// on the application (by its tagged keyId, else its thumbprint) and the one it replaced.
pub(crate) fn learn_certificate(
    enrolment: &mut Enrolment,
    cert: &CertificateCredentialPolicy,
    obs: &CertObservation,
) {
    let CertVaultState::Present(c) = &obs.vault else {
        return;
    };
    let Some((v, t)) = c.current() else { return };
    let on_app = obs
        .app
        .as_ref()
        .ok()
        .and_then(|a| a.key_of_version(v, Some(t.key_id)))
        .map(|k| k.key_id);
    enrolment.observed_certificate(
        &cert.name,
        Some(on_app.unwrap_or(t.key_id)),
        t.previous_key_id,
        format!("{}/{}", cert.certificate.vault, cert.certificate.name),
    );
}

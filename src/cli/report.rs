//! `secret-rotator report`: every application credential (secrets and certificates) the
//! identity can see, then the credentials service principals hold themselves, with expiry, days
//! left, enrolment (by a secret or a certificate credential of the policy) and the Key Vault
//! secret or certificate holding it.
//!
//! The scan is [`crate::engine::inventory::InventoryScan`], the same one the timer pass and `Status`
//! use: each Graph page is turned into rows and written before the next is fetched, so the
//! memory used is one page whatever the tenant's size. When the identity cannot read every
//! application (its token carries no `Application.Read.All`, or Graph refuses the list) the
//! report says so on stderr and lists the applications it owns instead (`ownedObjects`).

use std::io::Write;

use chrono::{DateTime, Utc};

use super::{CliError, Connection};
use crate::engine::inventory::{Format, InventoryScan, RowWriter, ScanOptions};

#[derive(Debug, Clone, Copy)]
pub struct ReportOptions {
    pub format: Format,
    /// Only the applications the identity owns, without trying the full list first.
    pub owned_only: bool,
    /// A progress line on stderr after every page.
    pub progress: bool,
    /// Applications per Graph page (1-999).
    pub page_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSummary {
    pub applications: usize,
    /// Service principals scanned for credentials of their own (0 when not listed).
    pub service_principals: usize,
    pub rows: usize,
    pub pages: usize,
    /// True when only owned applications were listed.
    pub owned_only: bool,
}

pub async fn report(
    conn: &Connection,
    opts: ReportOptions,
    now: DateTime<Utc>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ReportSummary, CliError> {
    // Which credentials the policy keeps and which password each vault holds: one observation
    // per enrolled credential, never one per application.
    let (_, mut enrolment) = conn.engine.credentials_status(now).await;
    // The certificate credentials' keys likewise (one observation each).
    conn.engine.certificates_status(&mut enrolment, now).await;
    let scan_opts = ScanOptions {
        owned_only: opts.owned_only,
        page_size: opts.page_size,
        deadline: None,
    };
    let mut scan = InventoryScan::new(conn.engine.azure.as_ref(), &enrolment, scan_opts, now);
    let mut writer = RowWriter::new(&mut *out, opts.format);
    writer.header()?;
    let mut sp_pages = 0;
    loop {
        let page = scan.next_page().await;
        for note in scan.take_notes() {
            writeln!(err, "report: {note}")?;
        }
        let Some(rows) = page.map_err(CliError::Inventory)? else {
            break;
        };
        for row in &rows {
            writer.row(row)?;
        }
        if opts.progress {
            let s = scan.summary();
            if s.service_principals == 0 {
                writeln!(
                    err,
                    "report: page {}: {} application(s), {} credential(s) so far",
                    s.pages, s.applications, s.rows
                )?;
            } else {
                sp_pages += 1;
                writeln!(
                    err,
                    "report: service principals page {sp_pages}: {} service principal(s), {} credential(s) so far",
                    s.service_principals, s.rows
                )?;
            }
        }
    }
    writer.finish()?;
    let s = scan.summary();
    Ok(ReportSummary {
        applications: s.applications,
        service_principals: s.service_principals,
        rows: s.rows,
        pages: s.pages,
        owned_only: s.owned_only,
    })
}

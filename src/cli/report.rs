//! `secret-rotator report`: every application credential (secrets and certificates) the
//! identity can see, then the credentials service principals hold themselves, with expiry, days
//! left, enrolment and the Key Vault secret holding it.
//!
//! Streamed: each Graph page is turned into rows and written before the next is fetched, so the
//! memory used is one page whatever the tenant's size. When the identity cannot read every
//! application (its token carries no `Application.Read.All`, or Graph answers 403) the report
//! says so on stderr and lists the applications it owns instead (`ownedObjects`).

use std::io::Write;

use chrono::{DateTime, Utc};

use super::{CliError, Connection};
use crate::azure::graph::{AppPager, GraphError};
use crate::inventory::{Enrolment, Format, RowWriter, rows_for_app, rows_for_service_principal};

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

/// Which credentials the policy keeps, and which password's value each Key Vault secret holds
/// (from the engine's status: the `rotator-key-id` tag or a token match). Costs one observation
/// per enrolled credential, never one per application.
async fn enrolment(conn: &Connection, now: DateTime<Utc>) -> Enrolment {
    let mut e = Enrolment::from_policy(Some(conn.policy()));
    let status = conn.engine.status_report(now).await;
    for cred in &conn.policy().credentials {
        let st = status.credentials.iter().find(|s| s.name == cred.name);
        if let Some(key) = st
            .and_then(|s| s.key_id_in_use.as_deref())
            .and_then(|k| uuid::Uuid::parse_str(k).ok())
        {
            e.held_in_vault(
                key,
                format!("{}/{}", cred.key_vault.vault, cred.key_vault.secret),
            );
        }
    }
    e
}

async fn owned_pager(conn: &Connection, err: &mut dyn Write) -> Result<AppPager, CliError> {
    let who = conn.identity().await?;
    // A user's token (Azure CLI login) has no app roles: the user's own ownedObjects.
    if who.roles.is_none() {
        writeln!(
            err,
            "report: listing the applications owned by the signed-in user {} (me/ownedObjects)",
            who.object_id
        )?;
        return Ok(conn.graph.my_owned_applications());
    }
    writeln!(
        err,
        "report: listing the applications owned by {} (servicePrincipals/{}/ownedObjects)",
        who.object_id, who.object_id
    )?;
    Ok(conn.graph.owned_applications(who.object_id))
}

pub async fn report(
    conn: &Connection,
    opts: ReportOptions,
    now: DateTime<Utc>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ReportSummary, CliError> {
    let enrolment = enrolment(conn, now).await;
    let mut owned_only = opts.owned_only;
    if !owned_only
        && let Ok(who) = conn.identity().await
        && !who.can_read_all_applications()
    {
        writeln!(
            err,
            "report: the identity lacks Application.Read.All (its token has no role that reads every application); only the applications it owns are listed"
        )?;
        owned_only = true;
    }
    let mut pager = if owned_only {
        owned_pager(conn, err).await?
    } else {
        conn.graph.list_applications(None, opts.page_size)
    };
    let mut writer = RowWriter::new(&mut *out, opts.format);
    writer.header()?;
    let mut summary = ReportSummary {
        applications: 0,
        service_principals: 0,
        rows: 0,
        pages: 0,
        owned_only,
    };
    loop {
        let page = match pager.next_listing().await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // Only the first page can be refused for lack of a role; later refusals are errors.
            Err(GraphError::AccessDenied { status: 403, .. })
                if summary.pages == 0 && !summary.owned_only =>
            {
                writeln!(
                    err,
                    "report: Graph refused to list every application (403): the identity lacks Application.Read.All; falling back to the applications it owns"
                )?;
                summary.owned_only = true;
                pager = owned_pager(conn, err).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        summary.pages += 1;
        for listed in &page {
            summary.applications += 1;
            for row in rows_for_app(&listed.app, &listed.certificates, &enrolment, now) {
                writer.row(&row)?;
                summary.rows += 1;
            }
        }
        if opts.progress {
            writeln!(
                err,
                "report: page {}: {} application(s), {} credential(s) so far",
                summary.pages, summary.applications, summary.rows
            )?;
        }
    }
    // Then the credentials service principals hold themselves (SAML signing certificates).
    // Listing them needs the same directory-wide read as the applications.
    if summary.owned_only {
        writeln!(
            err,
            "report: service principals' own credentials are not listed (that needs Application.Read.All)"
        )?;
    } else {
        let mut sps = conn.graph.list_service_principals(opts.page_size);
        let mut sp_pages = 0;
        loop {
            let page = match sps.next_listing().await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e @ GraphError::AccessDenied { .. }) if sp_pages == 0 => {
                    writeln!(
                        err,
                        "report: service principals' own credentials are not listed: {e}"
                    )?;
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            sp_pages += 1;
            summary.pages += 1;
            for listed in &page {
                summary.service_principals += 1;
                for row in rows_for_service_principal(&listed.app, &listed.certificates, now) {
                    writer.row(&row)?;
                    summary.rows += 1;
                }
            }
            if opts.progress {
                writeln!(
                    err,
                    "report: service principals page {sp_pages}: {} service principal(s), {} credential(s) so far",
                    summary.service_principals, summary.rows
                )?;
            }
        }
    }
    writer.finish()?;
    Ok(summary)
}

//! `diagnose` for certificate credentials: the client-assertion refusals of Entra's token
//! endpoint, the application's registered certificates (`keyCredentials`) and, when the
//! application is enrolled with a certificate credential, its Key Vault certificate and
//! consumers.
//!
//! Codes and wordings, with their sources:
//! - AADSTS700027 "Client assertion failed signature validation" (entra-docs
//!   docs/identity-platform/reference-error-codes.md); the reasons Entra puts in brackets as
//!   recorded in answers: "The key was not found." with "Thumbprint of key used by client:
//!   '…'" and "app Id '…'", "The key used is expired." with "Found key 'Start=…, End=…'"
//!   (help.univention.com topic 23196; Microsoft's Exchange hybrid troubleshooting quotes the
//!   expired form), and "The provided signature value did not match the expected signature
//!   value.".
//! - AADSTS700024 "Client assertion is not within its valid time range."; AADSTS7000274
//!   ClientAssertionContainsInvalidSignature; AADSTS7000214 CertificateHasBeenRevoked and
//!   AADSTS7000277 CertificateWasRevoked; AADSTS1000502 CertificateIsOutsideValidityWindow
//!   (the certificate-error set of AzureAD/microsoft-identity-web, CertificateReloadLogicTests).
//!
//! Thumbprints: Entra prints the SHA-1 thumbprint in hex; an assertion header carries it
//! base64url (`x5t`) or as SHA-256 (`x5t#S256`, Microsoft identity platform "certificate
//! credentials"). All three forms are matched against each registered certificate.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha1::Digest as _;
use uuid::Uuid;

use super::{Diagnosis, PasswordState};
use crate::azure::keycredentials::KeyCredential;
use crate::engine::inventory::days_left;
use crate::policy::{AppRef, CertificateCredentialPolicy};

/// The certificate codes `diagnose` explains.
pub const CERTIFICATE_CODES: [u64; 6] = [700027, 700024, 7000274, 7000214, 7000277, 1000502];

/// What a certificate code means, in an operator's words.
pub fn meaning(code: u64) -> Option<&'static str> {
    Some(match code {
        700027 => {
            "the client assertion failed signature validation: Entra found no registered, currently valid certificate of the application that signed it"
        }
        700024 => {
            "the client assertion is not within its valid time range (its nbf..exp): the caller's clock is off, or it reused an assertion after it expired"
        }
        7000274 => "the client assertion contains an invalid signature",
        7000214 | 7000277 => "the certificate that signed the client assertion has been revoked",
        1000502 => {
            "the certificate that signed the client assertion is outside its validity window"
        }
        _ => return None,
    })
}

/// Why Entra refused the signature (AADSTS700027's bracketed reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SignatureReason {
    KeyNotFound,
    KeyExpired,
    KeyNotYetValid,
    SignatureMismatch,
    Unstated,
}

/// What the error line says about the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionLine {
    pub reason: SignatureReason,
    /// The thumbprint Entra names (hex SHA-1, or as the header carried it).
    pub thumbprint: Option<String>,
    /// The application, from "app Id '…'" (the anchor the generic parser does not know).
    pub app_id: Option<Uuid>,
}

impl AssertionLine {
    pub fn parse(text: &str) -> Self {
        let lower = text.to_ascii_lowercase();
        let reason = if lower.contains("key was not found") {
            SignatureReason::KeyNotFound
        } else if lower.contains("key used is expired") {
            SignatureReason::KeyExpired
        } else if lower.contains("not yet valid") {
            SignatureReason::KeyNotYetValid
        } else if lower.contains("signature value did not match") {
            SignatureReason::SignatureMismatch
        } else {
            SignatureReason::Unstated
        };
        Self {
            reason,
            thumbprint: quoted_after(text, "thumbprint of key used by client:").filter(|t| {
                t.len() <= 64
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }),
            app_id: quoted_after(text, "app id").and_then(|t| Uuid::parse_str(&t).ok()),
        }
    }
}

/// The `'…'` right after `anchor` (case-insensitive).
fn quoted_after(text: &str, anchor: &str) -> Option<String> {
    let at = text.to_ascii_lowercase().find(anchor)? + anchor.len();
    let rest = text[at..].trim_start();
    let rest = rest.strip_prefix(['\'', '"', '‘'])?;
    let end = rest.find(['\'', '"', '’'])?;
    Some(rest[..end].to_string())
}

/// One registered certificate of the application, as `diagnose` shows it (public facts only).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyFinding {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub days_left: Option<i64>,
    pub state: PasswordState,
    /// SHA-1 thumbprint, hex upper-case (as Entra and the portal print it); empty when Graph did
    /// not return the certificate.
    pub thumbprint: String,
    /// The certificate the error line names.
    pub named_by_error: bool,
}

fn thumbprint_forms(cer: &[u8]) -> (String, [String; 2]) {
    let sha1 = sha1::Sha1::digest(cer);
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let hex: String = sha1.iter().map(|b| format!("{b:02X}")).collect();
    (
        hex,
        [url.encode(sha1), url.encode(sha2::Sha256::digest(cer))],
    )
}

/// The application's certificates at `now`, each marked when it is the one `thumbprint` names.
pub fn key_findings(
    keys: &[KeyCredential],
    thumbprint: Option<&str>,
    renew_days: i64,
    now: DateTime<Utc>,
) -> Vec<KeyFinding> {
    keys.iter()
        .map(|k| {
            let (hex, others) = match k.cer.is_empty() {
                true => (String::new(), [String::new(), String::new()]),
                false => thumbprint_forms(&k.cer),
            };
            let named = thumbprint.is_some_and(|t| {
                !hex.is_empty() && (t.eq_ignore_ascii_case(&hex) || others.iter().any(|o| o == t))
            });
            let left = k.end.map(|e| days_left(e, now));
            let state = match (k.start, k.end) {
                (_, Some(end)) if end <= now => PasswordState::Expired,
                (Some(start), _) if start > now => PasswordState::NotYetValid,
                (_, Some(_)) if left.is_some_and(|l| l < renew_days) => PasswordState::Expiring,
                _ => PasswordState::Valid,
            };
            KeyFinding {
                key_id: k.key_id,
                display_name: k.display_name.clone(),
                start: k.start,
                end: k.end,
                days_left: left,
                state,
                thumbprint: hex,
                named_by_error: named,
            }
        })
        .collect()
}

fn describe(k: &KeyFinding) -> String {
    format!(
        "'{}' ({}, thumbprint {}), {}",
        k.display_name.as_deref().unwrap_or("no description"),
        k.key_id,
        if k.thumbprint.is_empty() {
            "unknown"
        } else {
            &k.thumbprint
        },
        match (k.end, k.days_left) {
            (Some(e), Some(l)) if l < 0 =>
                format!("expired on {} ({} days ago)", e.format("%Y-%m-%d"), -l),
            (Some(e), Some(l)) => format!("valid until {} ({l} days left)", e.format("%Y-%m-%d")),
            _ => "no end date".into(),
        }
    )
}

/// The certificate credential enrolled for the application, if any.
pub fn enrolled_for(
    certificates: &[CertificateCredentialPolicy],
    app_id: Uuid,
    object_id: Option<Uuid>,
) -> Option<&CertificateCredentialPolicy> {
    certificates.iter().find(|c| match c.application {
        AppRef::AppId(id) => id == app_id,
        AppRef::ObjectId(id) => object_id == Some(id),
    })
}

/// Findings and fixes for a certificate code, from the line, the registered keys and the
/// enrolment.
pub fn explain(
    d: &mut Diagnosis,
    line: &AssertionLine,
    app_name: &str,
    enrolled: Option<&CertificateCredentialPolicy>,
) {
    let named: Vec<&KeyFinding> = d.keys.iter().filter(|k| k.named_by_error).collect();
    let valid: Vec<&KeyFinding> = d
        .keys
        .iter()
        .filter(|k| k.state != PasswordState::Expired && k.state != PasswordState::NotYetValid)
        .collect();
    d.involved = named.iter().map(|k| k.key_id).collect();
    match (d.code, line.reason) {
        (700027, SignatureReason::KeyNotFound) => match (named.first(), &line.thumbprint) {
            (Some(k), _) => {
                d.findings.push(format!("the certificate that signed is registered on {app_name}: {}", describe(k)));
                d.findings.push("a key added in the last minutes is not yet known to every token server (Entra's replication delay)".into());
                d.fix.push("retry in a few minutes; if it persists, remove and re-add the certificate".into());
            }
            (None, Some(t)) => {
                d.findings.push(format!("no certificate registered on {app_name} has thumbprint {t}: the caller signs with a certificate the application does not know (an old version, or another application's)"));
                if valid.is_empty() {
                    d.findings.push(format!("{app_name} has no currently valid certificate at all"));
                }
                d.fix.push("point the caller at the certificate whose thumbprint is listed under Certificates (its current version), or add the caller's certificate's public key to the application".into());
            }
            (None, None) => d.findings.push("the line names no thumbprint: compare the caller's certificate with the ones listed under Certificates".into()),
        },
        (700027, SignatureReason::KeyExpired) | (1000502, _) => {
            for k in d.keys.iter().filter(|k| k.state == PasswordState::Expired && (k.named_by_error || named.is_empty())) {
                d.findings.push(format!("expired certificate of {app_name}: {}", describe(k)));
            }
            match valid.first() {
                Some(k) => d.fix.push(format!("move the caller to the valid certificate {}", describe(k))),
                None => d.fix.push(format!("{app_name} has no valid certificate: renew it (a new Key Vault certificate version, its public key on the application) and move the caller to it")),
            }
        }
        (700027, SignatureReason::KeyNotYetValid) => {
            d.findings.push("the certificate that signed starts in the future: the caller uses a version before its start date, or its clock is behind".into());
            d.fix.push("keep the caller on the current certificate until the new one starts; check the caller's clock".into());
        }
        (700027 | 7000274, SignatureReason::SignatureMismatch | SignatureReason::Unstated) => {
            d.findings.push("the assertion names a registered certificate but its signature does not verify with that certificate's public key: the caller signs with another private key than the certificate it names (a PFX and certificate from different versions), or with an algorithm other than RS256/PS256".into());
            d.fix.push("load the certificate and its private key from the same version (the Key Vault certificate's secret), and sign RS256 or PS256".into());
        }
        (700024, _) => {
            d.findings.push("Entra checks the assertion's nbf and exp against its own clock, with a few minutes of tolerance".into());
            d.fix.push("sync the caller's clock (NTP) and build a new assertion for each token request; MSAL and Azure.Identity do both when given the certificate".into());
        }
        (7000214 | 7000277, _) => {
            d.fix.push("the certificate is revoked: issue a new version and move the caller to it; remove the revoked key from the application".into());
        }
        _ => {}
    }
    if let Some(c) = enrolled {
        d.enrolled_as = Some(c.name.clone());
        d.key_vault = Some(format!(
            "{}/certificates/{}",
            c.certificate.vault, c.certificate.name
        ));
        d.findings.push(format!(
            "enrolled as certificate credential '{}': its versions live in Key Vault certificate {}/{}",
            c.name, c.certificate.vault, c.certificate.name
        ));
        d.used_by.extend(c.consumers.iter().map(|u| u.describe()));
        d.fix.push(format!(
            "check `secret-rotator status` for '{}': the consumers listed there must hold the current version",
            c.name
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_thumbprints_and_app_ids_are_read_from_real_wordings() {
        let l = AssertionLine::parse(
            "AADSTS700027: Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '9F3B5C27D1E4A6B8C0D2E4F6A8B0C2D4E6F8A0B2', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id 'ccc25fb8-d83b-4225-b4b7-5f31bfb007be'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine the corresponding service endpoint]",
        );
        assert_eq!(l.reason, SignatureReason::KeyNotFound);
        assert_eq!(
            l.thumbprint.as_deref(),
            Some("9F3B5C27D1E4A6B8C0D2E4F6A8B0C2D4E6F8A0B2")
        );
        assert_eq!(
            l.app_id,
            Uuid::parse_str("ccc25fb8-d83b-4225-b4b7-5f31bfb007be").ok()
        );
        let l = AssertionLine::parse(
            "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: 'A1B2', Found key 'Start=06/29/2021 21:13:15, End=06/29/2023 21:13:15']",
        );
        assert_eq!(l.reason, SignatureReason::KeyExpired);
        assert_eq!(l.app_id, None);
        assert_eq!(
            AssertionLine::parse(
                "AADSTS700024: Client assertion is not within its valid time range."
            )
            .reason,
            SignatureReason::Unstated
        );
        // Quoted text that is not a thumbprint never comes back.
        assert_eq!(
            AssertionLine::parse("Thumbprint of key used by client: '<script>'").thumbprint,
            None
        );
    }

    #[test]
    fn every_certificate_code_has_a_meaning() {
        for c in CERTIFICATE_CODES {
            assert!(meaning(c).is_some(), "{c}");
        }
        assert_eq!(meaning(7000222), None);
    }
}

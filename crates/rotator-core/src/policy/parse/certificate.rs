//! `"type": "certificate"` entries -> [`CertificateCredentialPolicy`], in the parent's style:
//! every field checked, every problem recorded with its field, the policy built only when the
//! whole entry is valid. Limits and their sources are in [`crate::policy::certificate`].

use serde_json::{Map, Value};

use super::{ArmKind, ConsumerObj, Cx, Days, Entry, check_secret_name, check_vault_name, kind, q};
use crate::policy::certificate::{
    CertificateConsumer, CertificateCredentialPolicy, Issuer, MAX_VALIDITY_MONTHS,
    MIN_DAYS_PER_MONTH, MIN_VALIDITY_MONTHS, RENEW_DAYS_PER_MONTH, RsaKeySize, VaultCertificateRef,
};
use crate::policy::minimums::MIN_GRACE_DAYS_NOTIFY_ONLY;

const FIELDS: &[&str] = &[
    "type",
    "name",
    "application",
    "tenantId",
    "certificate",
    "issuer",
    "subject",
    "keyType",
    "keySize",
    "keyExportable",
    "validityInMonths",
    "renewBeforeDays",
    "graceDays",
    "consumers",
    "replacesSecret",
];

const CONSUMER_TYPES: &[&str] = &[
    "appSettingKeyVaultReference",
    "appSettingThumbprint",
    "notifyOnly",
];

const DEFAULT_VALIDITY_MONTHS: u32 = 12;

/// The valid parts of one certificate entry, for the checks across entries.
#[derive(Default)]
pub(super) struct CertificateParts {
    pub name: Option<String>,
    pub certificate: Option<VaultCertificateRef>,
    /// (index in `consumers`, consumer) for each valid consumer.
    pub consumers: Vec<(usize, CertificateConsumer)>,
    pub policy: Option<CertificateCredentialPolicy>,
}

/// The key-related fields of an entry.
struct KeyFields {
    size: Option<RsaKeySize>,
    exportable: Option<bool>,
}

impl Cx<'_> {
    /// One certificate entry; `defaults` gives `renewBeforeDays` and `graceDays` when absent
    /// (its `lifetimeDays` is a client secret's and does not apply).
    pub(super) fn certificate_entry(
        &mut self,
        entry: &Entry,
        obj: &Map<String, Value>,
        defaults: Days,
    ) -> CertificateParts {
        let e = Some(entry);
        let before = self.errors.len();
        self.deny_unknown(e, "", obj, FIELDS);
        let mut parts = CertificateParts {
            name: self.credential_name(entry, obj),
            ..Default::default()
        };
        let application = match obj.get("application") {
            None => {
                self.push(e, "application", "missing (required): give { \"appId\": \"<guid>\" } or { \"objectId\": \"<guid>\" }");
                None
            }
            Some(v) => self.application(entry, v),
        };
        let tenant_id = self.tenant_id(entry, obj);
        parts.certificate = self.certificate_ref(entry, obj);
        let issuer = self.issuer(entry, obj);
        let subject = self.subject(entry, obj, parts.name.as_deref());
        let key = self.key_fields(entry, obj);
        let validity = self.validity(entry, obj);
        let renew = self.days(e, "", obj, "renewBeforeDays");
        let grace = self.days(e, "", obj, "graceDays");
        let pick = |got: Result<Option<i64>, ()>, dflt: Option<i64>| match got {
            Ok(Some(v)) => Some(v),
            Ok(None) => dflt,
            Err(()) => None,
        };
        let (renew, grace) = (
            pick(renew, defaults.renew_before),
            pick(grace, defaults.grace),
        );
        parts.consumers = self.certificate_consumers(entry, obj);
        let replaces_secret = self.replaces_secret(entry, obj);
        let listed: Vec<CertificateConsumer> =
            parts.consumers.iter().map(|(_, c)| c.clone()).collect();
        let exportable = key
            .exportable
            .map(|x| self.exportable_fits(entry, x, &listed));
        self.certificate_days(entry, validity, renew, grace, &listed);
        if self.errors.len() != before {
            return parts;
        }
        let policy = (|| {
            Some(CertificateCredentialPolicy {
                name: parts.name.clone()?,
                application: application?,
                tenant_id: tenant_id?,
                certificate: parts.certificate.clone()?,
                issuer: issuer?,
                subject: subject?,
                key_size: key.size?,
                exportable: exportable?,
                validity_months: validity?,
                renew_before: chrono::Duration::try_days(renew?)?,
                grace: chrono::Duration::try_days(grace?)?,
                consumers: listed,
                replaces_secret: replaces_secret?,
            })
        })();
        parts.policy = policy;
        parts
    }

    /// `certificate`: `{ "vault": "<name>", "name": "<certificate>" }`.
    fn certificate_ref(
        &mut self,
        entry: &Entry,
        obj: &Map<String, Value>,
    ) -> Option<VaultCertificateRef> {
        let e = Some(entry);
        let Some(v) = obj.get("certificate") else {
            self.push(
                e,
                "certificate",
                "missing (required): give { \"vault\": \"<name>\", \"name\": \"<certificate name>\" }",
            );
            return None;
        };
        let c = self.object(e, "certificate", v)?;
        self.deny_unknown(e, "certificate", c, &["vault", "name"]);
        let vault = self.string(e, "certificate", c, "vault", true);
        let name = self.string(e, "certificate", c, "name", true);
        let vault = vault.and_then(|s| self.checked(e, "certificate.vault", s, check_vault_name));
        let name = name.and_then(|s| {
            self.checked(e, "certificate.name", s, |n| {
                check_secret_name(n).map_err(|m| m.replace("secret name", "certificate name"))
            })
        });
        Some(VaultCertificateRef {
            vault: vault?,
            name: name?,
        })
    }

    /// `s` when `check` accepts it; else the error is recorded under `field`.
    fn checked(
        &mut self,
        entry: Option<&Entry>,
        field: &str,
        s: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        match check(s) {
            Ok(()) => Some(s.to_string()),
            Err(m) => {
                self.push(entry, field, m);
                None
            }
        }
    }

    /// `issuer`: `Self` (the default) or the name of an issuer configured in the vault.
    /// `Unknown` is refused: Key Vault then waits for a person to merge a CA's answer, so the
    /// rotator could never renew it.
    fn issuer(&mut self, entry: &Entry, obj: &Map<String, Value>) -> Option<Issuer> {
        let e = Some(entry);
        if !obj.contains_key("issuer") {
            return Some(Issuer::SelfSigned);
        }
        let s = self.string(e, "", obj, "issuer", false)?;
        if s.eq_ignore_ascii_case("self") {
            return Some(Issuer::SelfSigned);
        }
        if s.eq_ignore_ascii_case("unknown") {
            self.push(
                e,
                "issuer",
                "'Unknown' (a CA outside Key Vault) cannot be renewed by the rotator: give 'Self' or the name of an integrated CA issuer configured in the vault",
            );
            return None;
        }
        let ok = (1..=127).contains(&s.len())
            && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
        if ok {
            Some(Issuer::Integrated(s.to_string()))
        } else {
            self.push(
                e,
                "issuer",
                format!(
                    "{} is not an issuer name (give 'Self' or a Key Vault issuer name: letters, digits and '-', 1-127)",
                    q(s)
                ),
            );
            None
        }
    }

    /// `subject`: an X.500 name with a CN (default `CN={name}`).
    fn subject(
        &mut self,
        entry: &Entry,
        obj: &Map<String, Value>,
        name: Option<&str>,
    ) -> Option<String> {
        let e = Some(entry);
        if !obj.contains_key("subject") {
            return Some(format!("CN={}", name.unwrap_or("secret-rotator")));
        }
        let s = self.string(e, "", obj, "subject", false)?;
        let has_cn = s
            .split([',', ';'])
            .any(|part| part.trim().to_ascii_uppercase().starts_with("CN="));
        if has_cn && s.len() <= 1024 && !s.chars().any(char::is_control) {
            Some(s.to_string())
        } else {
            self.push(
                e,
                "subject",
                format!(
                    "{} is not an X.500 subject with a common name (e.g. 'CN=my-app')",
                    q(s)
                ),
            );
            None
        }
    }

    /// `keyType` (only `RSA`), `keySize` (2048 default, 3072, 4096), `keyExportable` (default
    /// true).
    fn key_fields(&mut self, entry: &Entry, obj: &Map<String, Value>) -> KeyFields {
        let e = Some(entry);
        if let Some(t) = self.string(e, "", obj, "keyType", false)
            && t != "RSA"
        {
            self.push(
                e,
                "keyType",
                format!(
                    "{} is not supported: only 'RSA' (Entra verifies the rotator's client assertions as RS256/PS256)",
                    q(t)
                ),
            );
        }
        let size = match obj.get("keySize") {
            None => Some(RsaKeySize::Rsa2048),
            Some(v) => {
                let size = v.as_u64().and_then(RsaKeySize::from_bits);
                if size.is_none() {
                    self.push(
                        e,
                        "keySize",
                        format!("must be 2048, 3072 or 4096 (Key Vault's RSA key sizes), got {v}"),
                    );
                }
                size
            }
        };
        let exportable = match obj.get("keyExportable") {
            None => Some(true),
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.push(
                    e,
                    "keyExportable",
                    format!("expected true or false, got {}", kind(other)),
                );
                None
            }
        };
        KeyFields { size, exportable }
    }

    /// A non-exportable key cannot serve a consumer that loads the PFX from the certificate's
    /// secret: Key Vault leaves the private key out of it.
    fn exportable_fits(
        &mut self,
        entry: &Entry,
        exportable: bool,
        consumers: &[CertificateConsumer],
    ) -> bool {
        if !exportable && let Some(c) = consumers.iter().find(|c| c.needs_private_key()) {
            self.push(
                Some(entry),
                "keyExportable",
                format!(
                    "is false, but {} loads the private key from the certificate's secret, which Key Vault leaves out of a non-exportable certificate",
                    c.describe()
                ),
            );
        }
        exportable
    }

    /// `validityInMonths`: 1..=120 (default 12).
    fn validity(&mut self, entry: &Entry, obj: &Map<String, Value>) -> Option<u32> {
        let Some(v) = obj.get("validityInMonths") else {
            return Some(DEFAULT_VALIDITY_MONTHS);
        };
        let months = v
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .filter(|m| (MIN_VALIDITY_MONTHS..=MAX_VALIDITY_MONTHS).contains(m));
        if months.is_none() {
            self.push(
                Some(entry),
                "validityInMonths",
                format!(
                    "must be a whole number of months from {MIN_VALIDITY_MONTHS} to {MAX_VALIDITY_MONTHS}, got {v}"
                ),
            );
        }
        months
    }

    /// renewBeforeDays within Key Vault's trigger bound; graceDays over the consumers' floor
    /// and short enough that the old key is gone before the next renewal.
    fn certificate_days(
        &mut self,
        entry: &Entry,
        validity: Option<u32>,
        renew: Option<i64>,
        grace: Option<i64>,
        consumers: &[CertificateConsumer],
    ) {
        let e = Some(entry);
        if let Some(g) = grace
            && let Some(c) = consumers
                .iter()
                .find(|c| matches!(c, CertificateConsumer::NotifyOnly { .. }))
            && g < MIN_GRACE_DAYS_NOTIFY_ONLY
        {
            self.push(
                e,
                "graceDays",
                format!(
                    "must be at least {MIN_GRACE_DAYS_NOTIFY_ONLY} day(s) here, got {g}: {} cannot be read back, so the old key must stay long enough for it to switch",
                    c.describe()
                ),
            );
        }
        // Thumbprint and reference settings are read back: no floor for them.
        let (Some(m), Some(r)) = (validity, renew) else {
            return;
        };
        let bound = i64::from(m) * RENEW_DAYS_PER_MONTH;
        let lifetime = i64::from(m) * MIN_DAYS_PER_MONTH;
        if r > bound {
            self.push(
                e,
                "renewBeforeDays",
                format!(
                    "must be at most {bound} for {m} month(s) of validity (Key Vault's days_before_expiry bound: 27 days per month), got {r}"
                ),
            );
        } else if let Some(g) = grace
            && g >= lifetime - r
        {
            self.push(
                e,
                "graceDays",
                format!(
                    "must be less than the shortest validity minus renewBeforeDays ({g} >= {lifetime} - {r}) so the old key is gone before the next renewal"
                ),
            );
        }
    }

    /// `replacesSecret`: the name of a client-secret credential (checked across entries later).
    /// `Some(None)` when absent, `None` when invalid.
    fn replaces_secret(
        &mut self,
        entry: &Entry,
        obj: &Map<String, Value>,
    ) -> Option<Option<String>> {
        match self.string(Some(entry), "", obj, "replacesSecret", false) {
            Some(s) if super::valid_credential_name(s) => Some(Some(s.to_string())),
            Some(s) => {
                self.push(
                    Some(entry),
                    "replacesSecret",
                    format!("{} is not a credential name", q(s)),
                );
                None
            }
            None if obj.contains_key("replacesSecret") => None,
            None => Some(None),
        }
    }

    /// The valid consumers of the optional `consumers` array, with their index in it.
    fn certificate_consumers(
        &mut self,
        entry: &Entry,
        obj: &Map<String, Value>,
    ) -> Vec<(usize, CertificateConsumer)> {
        match obj.get("consumers") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, c)| self.certificate_consumer(entry, i, c).map(|c| (i, c)))
                .collect(),
            Some(other) => {
                self.push(
                    Some(entry),
                    "consumers",
                    format!("expected an array, got {}", kind(other)),
                );
                Vec::new()
            }
        }
    }

    fn certificate_consumer(
        &mut self,
        entry: &Entry,
        index: usize,
        v: &Value,
    ) -> Option<CertificateConsumer> {
        let e = Some(entry);
        let prefix = format!("consumers[{index}]");
        let obj = self.object(e, &prefix, v)?;
        let ty = self.string(e, &prefix, obj, "type", true)?;
        let allowed: &[&str] = match ty {
            "appSettingKeyVaultReference" | "appSettingThumbprint" => &["type", "site", "setting"],
            "notifyOnly" => &["type", "system", "instructions"],
            other => {
                self.push(
                    e,
                    format!("{prefix}.type"),
                    format!(
                        "unknown consumer type {} for a certificate (expected one of: {})",
                        q(other),
                        CONSUMER_TYPES.join(", ")
                    ),
                );
                return None;
            }
        };
        self.deny_unknown(e, &prefix, obj, allowed);
        let before = self.errors.len();
        let c = ConsumerObj {
            entry,
            prefix: &prefix,
            obj,
        };
        let consumer = if ty == "notifyOnly" {
            let system = self.text_field(&c, "system", "the name of the system to update by hand");
            let instructions = self.text_field(
                &c,
                "instructions",
                "the exact manual step a person must perform with the new certificate",
            );
            CertificateConsumer::NotifyOnly {
                system: system?,
                instructions: instructions?,
            }
        } else {
            let site = self.arm_field(&c, "site", ArmKind::Site);
            let setting = self.name_field(&c, "setting", super::check_setting_name);
            let (site, setting) = (site?, setting?);
            if ty == "appSettingThumbprint" {
                CertificateConsumer::AppSettingThumbprint { site, setting }
            } else {
                CertificateConsumer::AppSettingKeyVaultRef { site, setting }
            }
        };
        (self.errors.len() == before).then_some(consumer)
    }
}

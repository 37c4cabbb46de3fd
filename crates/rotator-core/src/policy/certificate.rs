//! Certificate credentials in the policy: an application's `keyCredentials` entry backed by a
//! Key Vault certificate, as the rest of the program sees it after validation.
//!
//! A certificate credential is its own entry (`"type": "certificate"`) beside the client
//! secrets ([`super::CredentialPolicy`]), so every secret policy parses exactly as before. Its
//! Key Vault certificate is created and renewed by Key Vault from the policy here (issuer, key,
//! validity); the rotator puts each new version's public key on the application, proves it with
//! a client assertion, moves the consumers and removes the old key after grace
//! ([`crate::planner::certificate`]).
//!
//! *Conversion*: an entry with `replacesSecret` names a client-secret credential of the same
//! application in the same file; that secret is removed once every one of its consumers has
//! moved to the certificate, and not before.
//!
//! Limits and their sources:
//! - Key size: Key Vault's RSA key sizes 2048, 3072 and 4096 (Key Vault REST 7.5
//!   `certificates.json` `KeyProperties.key_size`; "About keys": "RSA key sizes 2048, 3072,
//!   4096"). RSA only: Entra verifies client assertions signed RS256/PS256 with the registered
//!   certificate, and that is what the assertion client signs.
//! - Validity: Key Vault's `x509_props.validity_months`, a whole number of months; the rotator
//!   accepts 1..=120 (ten years; integrated CAs issue far less and Key Vault refuses more than
//!   they allow when the version is requested, which the planner reports).
//! - Renewal: at most `validity_months * 27` days before expiry, the bound Key Vault puts on a
//!   lifetime action's `days_before_expiry` trigger, and shorter than the validity.

use chrono::Duration;

use super::model::{AppRef, ArmResource, ConsumerId};

/// Least validity a certificate version can ask for, in months.
pub const MIN_VALIDITY_MONTHS: u32 = 1;
/// Most validity the rotator asks for, in months.
pub const MAX_VALIDITY_MONTHS: u32 = 120;
/// Key Vault's bound on `days_before_expiry`: this many days per month of validity.
pub const RENEW_DAYS_PER_MONTH: i64 = 27;
/// The fewest days any month of validity holds (February): used to compare a validity in
/// months with durations in days without guessing which months they are.
pub const MIN_DAYS_PER_MONTH: i64 = 28;

/// The Key Vault certificate holding the credential (its key signs, its secret is the PFX/PEM).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultCertificateRef {
    /// Vault name, the host's first label.
    pub vault: String,
    /// Certificate name, `^[0-9a-zA-Z-]{1,127}$` (the same rule as secrets).
    pub name: String,
}

/// Who issues the certificate (Key Vault policy `issuer.name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Issuer {
    /// `Self`: Key Vault signs it with its own key.
    SelfSigned,
    /// An issuer configured in the vault for an integrated CA (DigiCert, GlobalSign), by the
    /// name the vault knows it under.
    Integrated(String),
}

impl Issuer {
    /// The value of Key Vault's `issuer.name`.
    pub fn key_vault_name(&self) -> &str {
        match self {
            Issuer::SelfSigned => "Self",
            Issuer::Integrated(n) => n,
        }
    }
}

/// The RSA key sizes Key Vault creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RsaKeySize {
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl RsaKeySize {
    pub fn from_bits(bits: u64) -> Option<Self> {
        match bits {
            2048 => Some(RsaKeySize::Rsa2048),
            3072 => Some(RsaKeySize::Rsa3072),
            4096 => Some(RsaKeySize::Rsa4096),
            _ => None,
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            RsaKeySize::Rsa2048 => 2048,
            RsaKeySize::Rsa3072 => 3072,
            RsaKeySize::Rsa4096 => 4096,
        }
    }
}

/// A place that holds (or must be told about) the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertificateConsumer {
    /// An app setting `@Microsoft.KeyVault(...)` referencing the certificate's *secret* (the PFX
    /// or PEM with the private key): needs the key to be exportable.
    AppSettingKeyVaultRef { site: ArmResource, setting: String },
    /// An app setting holding the thumbprint, e.g. `WEBSITE_LOAD_CERTIFICATES` (App Service then
    /// loads the certificate imported to the site) or the app's own `ClientCertificateThumbprint`.
    AppSettingThumbprint { site: ArmResource, setting: String },
    /// A system nobody can write to from Azure: a person is told the exact manual step.
    NotifyOnly {
        system: String,
        instructions: String,
    },
}

impl CertificateConsumer {
    /// The consumer's id in the rotator's tags (see [`ConsumerId`]): a digest of its identity.
    pub fn id(&self) -> ConsumerId {
        ConsumerId::of_identity(&self.identity())
    }

    /// What makes the consumer this one, normalised as Azure compares it.
    pub fn identity(&self) -> String {
        const SITE: &str = "Microsoft.Web/sites";
        match self {
            CertificateConsumer::AppSettingKeyVaultRef { site, setting } => format!(
                "certificateKeyVaultReference|{}|{}",
                site.normalised_id(SITE),
                setting.to_ascii_lowercase()
            ),
            CertificateConsumer::AppSettingThumbprint { site, setting } => format!(
                "certificateThumbprint|{}|{}",
                site.normalised_id(SITE),
                setting.to_ascii_lowercase()
            ),
            CertificateConsumer::NotifyOnly {
                system,
                instructions,
            } => format!(
                "certificateNotifyOnly|{}|{}",
                system.trim().to_lowercase(),
                instructions.trim()
            ),
        }
    }

    /// Whether the consumer takes the private key out of Key Vault (the PFX/PEM secret).
    pub fn needs_private_key(&self) -> bool {
        matches!(self, CertificateConsumer::AppSettingKeyVaultRef { .. })
    }

    /// A one-line human description.
    pub fn describe(&self) -> String {
        let site = |r: &ArmResource| match &r.slot {
            Some(s) => format!("{}/{} (slot {s})", r.resource_group, r.name),
            None => format!("{}/{}", r.resource_group, r.name),
        };
        match self {
            CertificateConsumer::AppSettingKeyVaultRef { site: s, setting } => {
                format!(
                    "Key Vault certificate reference {setting} on site {}",
                    site(s)
                )
            }
            CertificateConsumer::AppSettingThumbprint { site: s, setting } => {
                format!("thumbprint setting {setting} on site {}", site(s))
            }
            CertificateConsumer::NotifyOnly { system, .. } => {
                format!("notify-only system {system}")
            }
        }
    }
}

/// One enrolled certificate credential.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateCredentialPolicy {
    /// Unique across all credentials of the file (secrets included); the keyCredential
    /// displayName marker is `secret-rotator:{name}:{date}`.
    pub name: String,
    pub application: AppRef,
    pub tenant_id: Option<String>,
    pub certificate: VaultCertificateRef,
    pub issuer: Issuer,
    /// X.500 subject of new versions, e.g. `CN=provision-assist`.
    pub subject: String,
    pub key_size: RsaKeySize,
    /// Key Vault policy `key_props.exportable`: whether the certificate's secret carries the
    /// private key. Always true when a consumer needs the PFX.
    pub exportable: bool,
    pub validity_months: u32,
    /// Start a renewal when the current version expires within this.
    pub renew_before: Duration,
    /// How long the previous key stays after every consumer has the new version.
    pub grace: Duration,
    pub consumers: Vec<CertificateConsumer>,
    /// The client-secret credential (by name) this certificate replaces, if converting.
    pub replaces_secret: Option<String>,
}

impl CertificateCredentialPolicy {
    /// The shortest lifetime a version of `validity_months` can have.
    pub fn min_lifetime(&self) -> Duration {
        Duration::days(i64::from(self.validity_months) * MIN_DAYS_PER_MONTH)
    }
}

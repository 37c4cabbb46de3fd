//! Key Vault certificates and their keys, hand-written on the shared request loop: ask for a
//! new certificate version from the certificate's policy (`POST /certificates/{n}/create`),
//! follow its pending operation, read a version (public `cer`, `x5t`, key and secret ids,
//! validity), read the policy, and sign a digest with the certificate's key
//! (`POST /keys/{n}/{v}/sign`) — the private key never leaves the vault.
//!
//! Wire shapes: Azure/azure-rest-api-specs specification/keyvault/data-plane/
//! Microsoft.KeyVault/stable/7.5/certificates.json (`CreateCertificate` 202 →
//! `CertificateOperation`, `GetCertificateOperation`, `GetCertificate`, `GetCertificatePolicy`)
//! and keys.json (`Sign`: `{alg, value}` → `{kid, value}`, base64url).
//!
//! A key id from an answer is a URL the client will send a token to: [`KeyId::parse`] accepts
//! only `https://{vault}.{the cloud's vault suffix}/keys/{name}/{version}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{Bearer, Idempotency, ServiceOptions, parse_json};
use super::error::{Error, Service};
use crate::cloud::Cloud;

/// api-version of the certificate and key operations used here (stable since 7.0).
const API_VERSION: &str = "7.5";

/// Key types a certificate policy can ask for (spec `JsonWebKeyType`, software-protected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    Rsa { bits: u32 },
    EcP256,
}

/// How the certificate's secret is encoded (`secret_props.contentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Pkcs12,
    Pem,
}

impl ContentType {
    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Pkcs12 => "application/x-pkcs12",
            ContentType::Pem => "application/x-pem-file",
        }
    }
}

/// The parts of a certificate policy the rotator sets and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePolicy {
    /// `Self` or an integrated CA's issuer name.
    pub issuer: String,
    pub subject: String,
    pub key: KeySpec,
    pub exportable: bool,
    pub reuse_key: bool,
    pub content_type: ContentType,
    pub validity_months: u32,
}

impl CertificatePolicy {
    fn to_json(&self) -> Value {
        let mut key_props = json!({"exportable": self.exportable, "reuse_key": self.reuse_key});
        match self.key {
            KeySpec::Rsa { bits } => {
                key_props["kty"] = json!("RSA");
                key_props["key_size"] = json!(bits);
            }
            KeySpec::EcP256 => {
                key_props["kty"] = json!("EC");
                key_props["crv"] = json!("P-256");
            }
        }
        json!({
            "key_props": key_props,
            "secret_props": {"contentType": self.content_type.mime()},
            "x509_props": {"subject": self.subject, "validity_months": self.validity_months},
            "issuer": {"name": self.issuer},
        })
    }
}

/// The state of a certificate operation (`status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationStatus {
    InProgress,
    Completed,
    /// `failed` or `cancelled`, with Key Vault's details (its own text, clipped).
    Failed {
        status: String,
        details: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub status: OperationStatus,
    pub request_id: Option<String>,
}

/// A key version Key Vault holds: `https://{vault}.{suffix}/keys/{name}/{version}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId {
    url: String,
    pub vault: String,
    pub name: String,
    pub version: String,
}

impl KeyId {
    /// Parses a key id, refusing any host but a vault of `cloud` (a token goes there).
    pub fn parse(cloud: Cloud, url: &str) -> Result<KeyId, String> {
        let u = url::Url::parse(url).map_err(|e| format!("key id is not a URL: {e}"))?;
        let host = u.host_str().unwrap_or("");
        let vault = host
            .strip_suffix(cloud.keyvault_suffix())
            .and_then(|v| v.strip_suffix('.'))
            .filter(|v| !v.is_empty() && !v.contains('.'))
            .ok_or_else(|| format!("key id host '{host}' is not a vault of this cloud"))?;
        let segs: Vec<&str> = u.path_segments().map(|s| s.collect()).unwrap_or_default();
        let ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        match (u.scheme(), u.port(), segs.as_slice()) {
            ("https", None, ["keys", name, version]) if ok(name) && ok(version) => Ok(KeyId {
                url: format!("https://{host}/keys/{name}/{version}"),
                vault: vault.to_string(),
                name: name.to_string(),
                version: version.to_string(),
            }),
            _ => Err("key id is not https://{vault}/keys/{name}/{version}".into()),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// One certificate version: public material and ids only.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateVersion {
    pub name: String,
    pub version: String,
    /// The DER certificate (public).
    pub cer: Vec<u8>,
    /// base64url SHA-1 of `cer`, as Key Vault gives it.
    pub x5t: String,
    pub key_id: KeyId,
    /// The secret holding the PFX/PEM (`sid`).
    pub secret_id: String,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub enabled: bool,
}

impl std::fmt::Debug for CertificateVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateVersion")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("x5t", &self.x5t)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Signature algorithms of Key Vault's `sign` the rotator uses for JWTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignAlgorithm {
    Rs256,
    Ps256,
    Es256,
}

impl SignAlgorithm {
    pub fn jws_name(self) -> &'static str {
        match self {
            SignAlgorithm::Rs256 => "RS256",
            SignAlgorithm::Ps256 => "PS256",
            SignAlgorithm::Es256 => "ES256",
        }
    }
}

pub struct CertificatesClient {
    cloud: Cloud,
    options: ServiceOptions,
    bearer: Bearer,
}

impl std::fmt::Debug for CertificatesClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificatesClient")
            .field("cloud", &self.cloud)
            .finish_non_exhaustive()
    }
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 127 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl CertificatesClient {
    pub fn new(
        cloud: Cloud,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
    ) -> Self {
        Self {
            cloud,
            bearer: Bearer::new(credential, cloud.keyvault_scope()),
            options,
        }
    }

    fn url(
        &self,
        operation: &'static str,
        vault: &str,
        path: &str,
        name: &str,
    ) -> Result<String, Error> {
        let vault_ok = (3..=24).contains(&vault.len())
            && vault.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !vault_ok || !valid_name(name) {
            return Err(Error::invalid_input(
                Service::KeyVault,
                operation,
                format!("vault '{vault}' or certificate '{name}' is not a valid name"),
            ));
        }
        Ok(format!("{}/{path}", self.cloud.vault_url(vault)))
    }

    async fn get_json(
        &self,
        url: &str,
        operation: &'static str,
        (vault, name): (&str, &str),
    ) -> Result<Value, Error> {
        let reply = super::common::send(
            &self.options.retry,
            Idempotency::Idempotent,
            Some(&self.bearer),
            || {
                self.options
                    .http
                    .get(url)
                    .query(&[("api-version", API_VERSION)])
            },
        )
        .await
        .map_err(|f| failed(&f, operation, vault, name))?;
        parse_json(operation, &reply.body)
            .map_err(|m| Error::bad_answer(Service::KeyVault, operation, m))
    }

    /// Asks for a new version (`policy` None: the certificate's current policy). Not
    /// idempotent: a repeat after an unknown outcome could start a second operation, so the
    /// caller reads the operation back instead.
    pub async fn create_version(
        &self,
        vault: &str,
        name: &str,
        policy: Option<&CertificatePolicy>,
    ) -> Result<Operation, Error> {
        self.create_tagged(vault, name, policy, &BTreeMap::new())
            .await
    }

    /// [`Self::create_version`] with `tags` on the version it makes (`CertificateCreateParameters
    /// .tags`; they belong to that version, as `GetCertificateVersions` shows them).
    pub async fn create_tagged(
        &self,
        vault: &str,
        name: &str,
        policy: Option<&CertificatePolicy>,
        tags: &BTreeMap<String, String>,
    ) -> Result<Operation, Error> {
        const OP: &str = "create a certificate version";
        let url = self.url(OP, vault, &format!("certificates/{name}/create"), name)?;
        let mut body = match policy {
            Some(p) => json!({"policy": p.to_json()}),
            None => json!({}),
        };
        if !tags.is_empty() {
            body["tags"] = json!(tags);
        }
        let reply = super::common::send(
            &self.options.retry,
            Idempotency::NotIdempotent,
            Some(&self.bearer),
            || {
                self.options
                    .http
                    .post(&url)
                    .query(&[("api-version", API_VERSION)])
                    .json(&body)
            },
        )
        .await
        .map_err(|f| failed(&f, OP, vault, name))?;
        let bad = |m| Error::bad_answer(Service::KeyVault, OP, m);
        let v: Value = parse_json("certificate operation", &reply.body).map_err(bad)?;
        parse_operation(&v).map_err(bad)
    }

    /// The certificate's current (or last) operation.
    pub async fn operation(&self, vault: &str, name: &str) -> Result<Operation, Error> {
        const OP: &str = "get a certificate operation";
        let url = self.url(OP, vault, &format!("certificates/{name}/pending"), name)?;
        let v = self.get_json(&url, OP, (vault, name)).await?;
        parse_operation(&v).map_err(|m| Error::bad_answer(Service::KeyVault, OP, m))
    }

    /// A version (None: the latest).
    pub async fn get(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<CertificateVersion, Error> {
        const OP: &str = "get a certificate";
        if version.is_some_and(|v| !valid_name(v)) {
            return Err(Error::invalid_input(
                Service::KeyVault,
                OP,
                "a certificate version is letters and digits",
            ));
        }
        let path = match version {
            Some(v) => format!("certificates/{name}/{v}"),
            None => format!("certificates/{name}/"),
        };
        let url = self.url(OP, vault, &path, name)?;
        let v = self.get_json(&url, OP, (vault, name)).await?;
        parse_version(self.cloud, name, &v).map_err(|m| Error::bad_answer(Service::KeyVault, OP, m))
    }

    /// Every version of the certificate, metadata only (`GetCertificateVersions`, items
    /// `CertificateItem {id, x5t, attributes, tags}`), following `nextLink` on the same vault.
    /// `NotFound` when there is no such certificate.
    pub async fn list_versions(
        &self,
        vault: &str,
        name: &str,
    ) -> Result<Vec<CertificateItem>, Error> {
        const OP: &str = "list certificate versions";
        let first = self.url(OP, vault, &format!("certificates/{name}/versions"), name)?;
        let first = format!("{first}?api-version={API_VERSION}&maxresults=25");
        let host = self.cloud.vault_url(vault);
        let mut next = Some(first);
        let mut out = Vec::new();
        // A bound on pages: 25 items each, far beyond any certificate's history.
        for _ in 0..200 {
            let Some(url) = next.take() else { break };
            let v = self.get_page(&url, OP, vault, name).await?;
            let bad = |m| Error::bad_answer(Service::KeyVault, OP, m);
            let items = v.get("value").and_then(Value::as_array).ok_or_else(|| {
                bad("certificate versions: 'value' is missing or not an array".into())
            })?;
            for i in items {
                out.push(parse_item(i).map_err(bad)?);
            }
            next = match v.get("nextLink").and_then(Value::as_str) {
                None | Some("") => None,
                Some(l) => Some(same_vault(l, &host).map_err(bad)?),
            };
        }
        Ok(out)
    }

    async fn get_page(
        &self,
        url: &str,
        op: &'static str,
        vault: &str,
        name: &str,
    ) -> Result<Value, Error> {
        let reply = super::common::send(
            &self.options.retry,
            Idempotency::Idempotent,
            Some(&self.bearer),
            || self.options.http.get(url),
        )
        .await
        .map_err(|f| failed(&f, op, vault, name))?;
        parse_json(op, &reply.body).map_err(|m| Error::bad_answer(Service::KeyVault, op, m))
    }

    /// Replaces one version's tags (`UpdateCertificate`, `PATCH /certificates/{n}/{v}` with
    /// `CertificateUpdateParameters {tags}`); answers the tags Key Vault kept.
    pub async fn update_tags(
        &self,
        vault: &str,
        name: &str,
        version: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, Error> {
        const OP: &str = "update a certificate version";
        if !valid_name(version) {
            return Err(Error::invalid_input(
                Service::KeyVault,
                OP,
                "a certificate version is letters and digits",
            ));
        }
        let url = self.url(OP, vault, &format!("certificates/{name}/{version}"), name)?;
        let body = json!({"tags": tags});
        // Replacing the tag set with the same set is harmless: safe to repeat.
        let reply = super::common::send(
            &self.options.retry,
            Idempotency::Idempotent,
            Some(&self.bearer),
            || {
                self.options
                    .http
                    .patch(&url)
                    .query(&[("api-version", API_VERSION)])
                    .json(&body)
            },
        )
        .await
        .map_err(|f| failed(&f, OP, vault, name))?;
        let v: Value =
            parse_json(OP, &reply.body).map_err(|m| Error::bad_answer(Service::KeyVault, OP, m))?;
        tags_of(&v).map_err(|m| Error::bad_answer(Service::KeyVault, OP, m))
    }

    /// The certificate's policy.
    pub async fn policy(&self, vault: &str, name: &str) -> Result<CertificatePolicy, Error> {
        const OP: &str = "get a certificate policy";
        let url = self.url(OP, vault, &format!("certificates/{name}/policy"), name)?;
        let v = self.get_json(&url, OP, (vault, name)).await?;
        parse_policy(&v).map_err(|m| Error::bad_answer(Service::KeyVault, OP, m))
    }

    /// Signs a SHA-256 digest with the key (in the vault). Answers the raw signature.
    pub async fn sign(
        &self,
        key: &KeyId,
        alg: SignAlgorithm,
        digest: &[u8; 32],
    ) -> Result<Vec<u8>, Error> {
        let url = format!("{}/sign", key.url());
        let body = json!({"alg": alg.jws_name(), "value": b64url(digest)});
        // Signing has no side effect: safe to repeat.
        let reply = super::common::send(
            &self.options.retry,
            Idempotency::Idempotent,
            Some(&self.bearer),
            || {
                self.options
                    .http
                    .post(&url)
                    .query(&[("api-version", API_VERSION)])
                    .json(&body)
            },
        )
        .await
        .map_err(|f| {
            let e = Error::from_failure(Service::KeyVault, SIGN, &f)
                .on(format!("key '{}' version {}", key.name, key.version));
            with_advice(e, &key.vault, &key.name)
        })?;
        #[derive(Deserialize)]
        struct Signed {
            value: String,
        }
        let bad = |m| Error::bad_answer(Service::KeyVault, SIGN, m);
        let s: Signed = parse_json("sign answer", &reply.body).map_err(bad)?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.value.trim_end_matches('='))
            .map_err(|e| bad(format!("sign answer: value is not base64url: {e}")))
    }
}

const SIGN: &str = "sign";

fn describe(vault: &str, name: &str) -> String {
    format!("certificate '{name}' in vault '{vault}'")
}

/// A failed certificate call as an [`Error`] on the certificate, with what to grant when Key
/// Vault refused the rotator.
fn failed(f: &super::common::Failure, operation: &'static str, vault: &str, name: &str) -> Error {
    let e = Error::from_failure(Service::KeyVault, operation, f).on(describe(vault, name));
    with_advice(e, vault, name)
}

/// An access denied names the action, scope and role that would allow it
/// ([`super::permissions::advise_denied`]).
fn with_advice(e: Error, vault: &str, name: &str) -> Error {
    match e.is_access_denied() {
        true => match super::permissions::advise_denied(e.operation(), vault, name) {
            Some(advice) => e.with_detail(advice),
            None => e,
        },
        false => e,
    }
}

fn str_field<'a>(v: &'a Value, k: &str, what: &str) -> Result<&'a str, String> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}: field '{k}' is missing or not a string"))
}

pub(crate) fn parse_operation(v: &Value) -> Result<Operation, String> {
    let status = str_field(v, "status", "certificate operation")?;
    let status = match status {
        "inProgress" => OperationStatus::InProgress,
        "completed" => OperationStatus::Completed,
        other => OperationStatus::Failed {
            status: other.chars().take(40).collect(),
            details: v
                .get("error")
                .and_then(|e| e.get("message"))
                .or_else(|| v.get("status_details"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(300)
                .collect(),
        },
    };
    Ok(Operation {
        status,
        request_id: v
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn unix(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_i64)
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

pub(crate) fn parse_version(
    cloud: Cloud,
    name: &str,
    v: &Value,
) -> Result<CertificateVersion, String> {
    let what = "certificate";
    let id = str_field(v, "id", what)?;
    let version = id.rsplit('/').next().unwrap_or("").to_string();
    let cer = base64::engine::general_purpose::STANDARD
        .decode(str_field(v, "cer", what)?)
        .map_err(|e| format!("{what}: 'cer' is not base64: {e}"))?;
    let key_id = KeyId::parse(cloud, str_field(v, "kid", what)?)?;
    let a = v.get("attributes");
    Ok(CertificateVersion {
        name: name.to_string(),
        version,
        cer,
        x5t: str_field(v, "x5t", what)?.to_string(),
        key_id,
        secret_id: str_field(v, "sid", what)?.to_string(),
        not_before: unix(a.and_then(|a| a.get("nbf"))),
        expires: unix(a.and_then(|a| a.get("exp"))),
        enabled: a
            .and_then(|a| a.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(true),
    })
}

/// One version as `GetCertificateVersions` lists it: metadata and tags, no certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateItem {
    pub version: String,
    /// base64url SHA-1 of the certificate, as Key Vault gives it.
    pub x5t: String,
    pub created: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub tags: BTreeMap<String, String>,
}

fn tags_of(v: &Value) -> Result<BTreeMap<String, String>, String> {
    match v.get("tags") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err("tags: a tag value is not a string".to_string()),
            })
            .collect(),
        Some(_) => Err("tags: not an object".into()),
    }
}

pub(crate) fn parse_item(v: &Value) -> Result<CertificateItem, String> {
    let what = "certificate version item";
    let id = str_field(v, "id", what)?;
    let version = id.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if !valid_name(version) {
        return Err(format!("{what}: the id names no version"));
    }
    let a = v.get("attributes");
    Ok(CertificateItem {
        version: version.to_string(),
        x5t: str_field(v, "x5t", what)?.to_string(),
        created: unix(a.and_then(|a| a.get("created"))),
        not_before: unix(a.and_then(|a| a.get("nbf"))),
        expires: unix(a.and_then(|a| a.get("exp"))),
        enabled: a
            .and_then(|a| a.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(true),
        tags: tags_of(v)?,
    })
}

/// A `nextLink` is followed only on the vault it came from (a token goes with it).
fn same_vault(link: &str, vault_url: &str) -> Result<String, String> {
    let (l, h) = (url::Url::parse(link), url::Url::parse(vault_url));
    match (l, h) {
        (Ok(l), Ok(h)) if l.scheme() == "https" && l.host_str() == h.host_str() => {
            Ok(link.to_string())
        }
        _ => Err("nextLink does not point at the same vault".into()),
    }
}

pub(crate) fn parse_policy(v: &Value) -> Result<CertificatePolicy, String> {
    let what = "certificate policy";
    let kp = v
        .get("key_props")
        .ok_or_else(|| format!("{what}: no key_props"))?;
    let key = match kp.get("kty").and_then(Value::as_str) {
        Some("RSA") | Some("RSA-HSM") => KeySpec::Rsa {
            bits: kp.get("key_size").and_then(Value::as_u64).unwrap_or(2048) as u32,
        },
        Some("EC") | Some("EC-HSM") => match kp.get("crv").and_then(Value::as_str) {
            None | Some("P-256") => KeySpec::EcP256,
            Some(c) => {
                return Err(format!(
                    "{what}: curve '{}' is not supported",
                    c.chars().take(20).collect::<String>()
                ));
            }
        },
        _ => return Err(format!("{what}: key_props.kty is missing or not supported")),
    };
    let content_type = match v
        .get("secret_props")
        .and_then(|s| s.get("contentType"))
        .and_then(Value::as_str)
    {
        Some("application/x-pem-file") => ContentType::Pem,
        _ => ContentType::Pkcs12,
    };
    let x = v.get("x509_props");
    Ok(CertificatePolicy {
        issuer: v
            .get("issuer")
            .and_then(|i| i.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_string(),
        subject: x
            .and_then(|x| x.get("subject"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        key,
        exportable: kp
            .get("exportable")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        reuse_key: kp
            .get("reuse_key")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        content_type,
        validity_months: x
            .and_then(|x| x.get("validity_months"))
            .and_then(Value::as_u64)
            .unwrap_or(12) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_only_on_this_clouds_vaults() {
        let k = KeyId::parse(
            Cloud::Public,
            "https://kv1.vault.azure.net/keys/app-cert/0123abcd",
        )
        .unwrap();
        assert_eq!(
            (k.vault.as_str(), k.name.as_str(), k.version.as_str()),
            ("kv1", "app-cert", "0123abcd")
        );
        for bad in [
            "https://evil.example/keys/a/b",
            "https://kv1.vault.azure.net.evil.example/keys/a/b",
            "http://kv1.vault.azure.net/keys/a/b",
            "https://kv1.vault.azure.net:8443/keys/a/b",
            "https://kv1.vault.azure.net/secrets/a/b",
            "https://kv1.vault.azure.net/keys/a",
            "https://a.b.vault.azure.net/keys/a/b",
            "https://vault.azure.net/keys/a/b",
        ] {
            assert!(KeyId::parse(Cloud::Public, bad).is_err(), "{bad}");
        }
        assert!(KeyId::parse(Cloud::China, "https://kv1.vault.azure.net/keys/a/b").is_err());
    }

    #[test]
    fn operations_and_policies_parse() {
        let op = parse_operation(&json!({"status": "inProgress", "request_id": "r"})).unwrap();
        assert_eq!(op.status, OperationStatus::InProgress);
        let failed =
            parse_operation(&json!({"status": "failed", "error": {"message": "CA said no"}}))
                .unwrap();
        assert!(
            matches!(failed.status, OperationStatus::Failed { ref details, .. } if details == "CA said no")
        );
        assert!(parse_operation(&json!({})).is_err());
        let p = CertificatePolicy {
            issuer: "Self".into(),
            subject: "CN=x".into(),
            key: KeySpec::Rsa { bits: 3072 },
            exportable: false,
            reuse_key: false,
            content_type: ContentType::Pem,
            validity_months: 6,
        };
        assert_eq!(parse_policy(&p.to_json()).unwrap(), p);
    }
}

//! Key Vault certificates and keys data plane (`{vault}.vault.azure.net`): create a certificate
//! version from a policy (issuer `Self`), its pending operation, get certificate / versions /
//! policy / list, the certificate's key (`GET /keys/{name}[/{version}]`) and the key's `sign`;
//! the certificate's secret is written into the vault's secrets (secrets route in
//! keyvault.rs), as Key Vault does ("When a Key Vault certificate is created, an addressable
//! key and secret are created that have the same name", MicrosoftDocs/azure-docs
//! articles/key-vault/certificates/about-certificates.md, "Composition of a certificate").
//!
//! Wire shapes: Azure/azure-rest-api-specs specification/keyvault/data-plane/Microsoft.KeyVault/
//! stable/7.5/certificates.json (`CreateCertificate` → 202 `CertificateOperation`,
//! `GetCertificateOperation`, `GetCertificate`, `GetCertificateVersions`,
//! `GetCertificatePolicy`, `GetCertificates`; examples/CreateCertificate-example.json and
//! GetCertificateOperation-example.json for the operation body and status text) and keys.json
//! (`GetKey`, `Sign`: `KeySignParameters {alg, value}` → `KeyOperationResult {kid, value}`).
//!
//! [`settle`] runs before every Key Vault request: it completes due operations and starts the
//! renewals `AutoRenew` lifetime actions call for.
//!
//! The pending operation completes on the emulated clock [`SELF_ISSUE_SECONDS`] after the
//! create (a decision: Microsoft documents only that issuance "may take some time"); the key
//! and certificate are made at create time and become visible when it completes. The private
//! key never leaves this module except inside an exportable certificate's secret.

use chrono::{DateTime, Duration, Months, Utc};
use serde_json::{Map, Value, json};

use crate::crypto::{self, CertInfo, KeyKind, PrivateKey, SignAlg};
use crate::jwt::Claims;
use crate::keyvault::{base, body_obj, error, error_inner, forbidden_in, page};
use crate::model::{SecretEntry, SecretVersion, Tenant, Vault, valid_secret_name};
use crate::server::{Req, Resp};
use crate::util::{b64, b64url, b64url_decode, hex32};

/// Emulated seconds between `create` and the `Self` issuer's completed operation.
pub const SELF_ISSUE_SECONDS: i64 = 3;
const RECOVERABLE_DAYS: i64 = 90;
const PKCS12: &str = "application/x-pkcs12";
const PEM: &str = "application/x-pem-file";

/// A certificate policy (spec `CertificatePolicy`), as parsed and as answered.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: KeyKind,
    pub exportable: bool,
    pub reuse_key: bool,
    pub pem: bool,
    pub subject: String,
    pub dns_names: Vec<String>,
    pub validity_months: u32,
    pub lifetime_actions: Value,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug, Clone)]
pub struct CertVersion {
    pub version: String,
    pub cer: Vec<u8>,
    pub nbf: i64,
    pub exp: i64,
    pub created: i64,
    pub enabled: bool,
    /// The version's tags (spec `CertificateBundle.tags`): set by `CreateCertificate`'s
    /// `tags` on the version it makes, replaced by `UpdateCertificate`.
    pub tags: std::collections::BTreeMap<String, String>,
}

/// A certificate's key version; `managed` (the certificate owns it).
#[derive(Debug, Clone)]
pub struct KeyVersion {
    pub version: String,
    pub key: PrivateKey,
    pub exportable: bool,
    pub jwk: Map<String, Value>,
    pub nbf: i64,
    pub exp: i64,
    pub created: i64,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default)]
pub struct KeyEntry {
    pub name: String,
    /// Oldest first; the last one is "latest".
    pub versions: Vec<KeyVersion>,
}

/// A create in progress: everything is made, nothing is visible until `due`.
#[derive(Debug, Clone)]
pub struct Pending {
    pub request_id: String,
    pub csr: Vec<u8>,
    pub due: DateTime<Utc>,
    pub cert: CertVersion,
    pub key: KeyVersion,
    pub secret: SecretVersion,
}

#[derive(Debug, Clone)]
pub struct CertEntry {
    pub name: String,
    pub policy: Policy,
    pub versions: Vec<CertVersion>,
    pub pending: Option<Pending>,
    /// The last completed operation (answered by `GET pending` until the next create).
    pub completed: Option<(String, String)>,
}

enum Route {
    Create(String),
    Pending(String),
    Get(String, Option<String>),
    Versions(String),
    Update(String, Option<String>),
    Policy(String),
    List,
    GetKey(String, Option<String>),
    Sign(String, Option<String>),
}

fn parse(req: &Req) -> Option<Route> {
    use axum::http::Method;
    let p = req.path.strip_prefix('/').unwrap_or(&req.path);
    let segs: Vec<&str> = p.split('/').collect();
    let s = |x: &str| x.to_string();
    let ver = |v: &str| (!v.is_empty()).then(|| v.to_string());
    Some(match (&req.method, segs.as_slice()) {
        (&Method::GET, ["certificates"] | ["certificates", ""]) => Route::List,
        (&Method::POST, ["certificates", n, "create"]) => Route::Create(s(n)),
        (&Method::GET, ["certificates", n, "pending"]) => Route::Pending(s(n)),
        (&Method::GET, ["certificates", n, "versions"]) => Route::Versions(s(n)),
        (&Method::GET, ["certificates", n, "policy"]) => Route::Policy(s(n)),
        (&Method::GET, ["certificates", n] | ["certificates", n, ""]) if !n.is_empty() => {
            Route::Get(s(n), None)
        }
        (&Method::GET, ["certificates", n, v]) => Route::Get(s(n), ver(v)),
        (&Method::PATCH, ["certificates", n] | ["certificates", n, ""]) if !n.is_empty() => {
            Route::Update(s(n), None)
        }
        (&Method::PATCH, ["certificates", n, v]) => Route::Update(s(n), ver(v)),
        (&Method::GET, ["keys", n] | ["keys", n, ""]) if !n.is_empty() => Route::GetKey(s(n), None),
        (&Method::GET, ["keys", n, v]) => Route::GetKey(s(n), ver(v)),
        (&Method::POST, ["keys", n, "sign"]) => Route::Sign(s(n), None),
        (&Method::POST, ["keys", n, v, "sign"]) => Route::Sign(s(n), ver(v)),
        _ => return None,
    })
}

pub fn classify(req: &Req) -> Option<&'static str> {
    Some(match parse(req)? {
        Route::Create(_) => "createCertificate",
        Route::Pending(_) => "getCertificateOperation",
        Route::Get(..) => "getCertificate",
        Route::Versions(_) => "listCertificateVersions",
        Route::Update(..) => "updateCertificate",
        Route::Policy(_) => "getCertificatePolicy",
        Route::List => "listCertificates",
        Route::GetKey(..) => "getKey",
        Route::Sign(..) => "sign",
    })
}

/// Completes the operations that are due, then answers the certificate and key routes
/// (`None`: not one of them; the secrets routes answer it, seeing completed certificates'
/// secrets).
pub fn handle(
    st: &mut Tenant,
    req: &Req,
    vname: &str,
    c: &Claims,
    now: DateTime<Utc>,
) -> Option<Resp> {
    let issue = issue_seconds(st);
    if let Some(v) = st.vaults.get_mut(vname) {
        settle(v, now, issue);
    }
    let route = parse(req)?;
    Some(route_answer(st, req, vname, route, c, now).unwrap_or_else(|e| e))
}

/// Moves every due pending version into the certificate, key and secret collections.
/// Completes due operations and starts the renewals the policies' `AutoRenew` lifetime
/// actions call for, until nothing more is due (a clock jump of years renews repeatedly).
pub fn settle(v: &mut Vault, now: DateTime<Utc>, issue: i64) {
    for _ in 0..64 {
        complete_due(v, now);
        if !start_auto_renewals(v, now, issue) {
            break;
        }
    }
}

/// When a version's `AutoRenew` action fires: `lifetime_percentage` of its validity or
/// `days_before_expiry` (spec `Trigger`; About Azure Key Vault certificates, "Certificate
/// policy": lifetime actions run "at the trigger"; the exact moment is a decision).
fn auto_renew_at(p: &Policy, cv: &CertVersion) -> Option<i64> {
    let actions = p.lifetime_actions.as_array()?;
    actions
        .iter()
        .filter(|a| a.pointer("/action/action_type").and_then(Value::as_str) == Some("AutoRenew"))
        .filter_map(|a| {
            let t = a.get("trigger")?;
            if let Some(pct) = t.get("lifetime_percentage").and_then(Value::as_i64) {
                Some(cv.nbf + (cv.exp - cv.nbf) * pct.clamp(1, 99) / 100)
            } else {
                t.get("days_before_expiry")
                    .and_then(Value::as_i64)
                    .map(|d| cv.exp - d * 86400)
            }
        })
        .min()
}

/// Starts a renewal (a pending operation dated at its trigger) for every certificate whose
/// latest version has reached its `AutoRenew` trigger. `true` when one started.
fn start_auto_renewals(v: &mut Vault, now: DateTime<Utc>, issue: i64) -> bool {
    let mut started = false;
    for (lname, e) in v.certificates.iter_mut() {
        let Some(at) = e
            .versions
            .last()
            .and_then(|cv| auto_renew_at(&e.policy, cv))
        else {
            continue;
        };
        let Some(at) = DateTime::from_timestamp(at, 0).filter(|t| *t <= now) else {
            continue;
        };
        if e.pending.is_some() {
            continue;
        }
        let reuse = e
            .policy
            .reuse_key
            .then(|| {
                v.keys
                    .get(lname)
                    .and_then(|k| k.versions.last())
                    .map(|k| k.key.clone())
            })
            .flatten();
        if let Ok(p) = make_version(&e.policy, reuse, at, issue) {
            e.pending = Some(p);
            started = true;
        }
    }
    started
}

fn complete_due(v: &mut Vault, now: DateTime<Utc>) {
    for e in v.certificates.values_mut() {
        if e.pending.as_ref().is_none_or(|p| p.due > now) {
            continue;
        }
        let Some(p) = e.pending.take() else { continue };
        let lname = e.name.to_ascii_lowercase();
        let keys = v.keys.entry(lname.clone()).or_insert_with(|| KeyEntry {
            name: e.name.clone(),
            versions: vec![],
        });
        keys.versions.push(p.key);
        let secrets = v.secrets.entry(lname).or_insert_with(|| SecretEntry {
            name: e.name.clone(),
            versions: vec![],
        });
        secrets.versions.push(p.secret);
        e.completed = Some((p.request_id, p.cert.version.clone()));
        e.versions.push(p.cert);
    }
}

fn cert_not_found(n: &str) -> Resp {
    error(
        404,
        "CertificateNotFound",
        &format!(
            "A certificate with (name/id) {n} was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn key_not_found(n: &str) -> Resp {
    error(
        404,
        "KeyNotFound",
        &format!(
            "A key with (name/id) {n} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn bad(msg: &str) -> Resp {
    error(400, "BadParameter", msg)
}

fn authorize(
    st: &Tenant,
    v: &Vault,
    c: &Claims,
    action: &str,
    item: Option<(&str, &str)>,
) -> Result<(), Resp> {
    let res = match item {
        Some((coll, n)) => format!("{}/{coll}/{n}", st.vault_scope(v)),
        None => st.vault_scope(v),
    };
    if st.authorized(c.oid, &res, action, true) {
        Ok(())
    } else {
        Err(forbidden_in(st, v, c, action, item))
    }
}

/// The name check and the RBAC data action of a route.
fn authorize_route(st: &Tenant, v: &Vault, route: &Route, c: &Claims) -> Result<(), Resp> {
    let (coll, name, action) = match route {
        Route::Create(n) => ("certificates", Some(n), "certificates/create/action"),
        Route::Update(n, _) => ("certificates", Some(n), "certificates/update/action"),
        Route::List => ("certificates", None, "certificates/read"),
        Route::Pending(n) | Route::Get(n, _) | Route::Versions(n) | Route::Policy(n) => {
            ("certificates", Some(n), "certificates/read")
        }
        Route::GetKey(n, _) => ("keys", Some(n), "keys/read"),
        Route::Sign(n, _) => ("keys", Some(n), "keys/sign/action"),
    };
    if let Some(n) = name
        && !valid_secret_name(n)
    {
        return Err(bad(&format!(
            "The request URI contains an invalid name: {n}"
        )));
    }
    let action = format!("Microsoft.KeyVault/vaults/{action}");
    authorize(st, v, c, &action, name.map(|n| (coll, n.as_str())))?;
    Ok(())
}

fn route_answer(
    st: &mut Tenant,
    req: &Req,
    vname: &str,
    route: Route,
    c: &Claims,
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    let v = st
        .vaults
        .get(vname)
        .ok_or_else(|| error(404, "VaultNotFound", "vault vanished"))?;
    authorize_route(st, v, &route, c)?;
    let entry = |n: &str| {
        v.certificates
            .get(&n.to_ascii_lowercase())
            .ok_or_else(|| cert_not_found(n))
    };
    match route {
        Route::Create(n) => create(st, req, vname, &n, now),
        Route::Update(n, ver) => update(st, req, vname, &n, ver.as_deref()),
        Route::Pending(n) => Ok(Resp::json(
            200,
            &operation_json(v, entry(&n)?, now).ok_or_else(|| {
                error(
                    404,
                    "PendingCertificateNotFound",
                    &format!("Pending certificate not found: {n}"),
                )
            })?,
        )),
        Route::Get(n, ver) => {
            let e = entry(&n)?;
            let cv = match &ver {
                None => e.versions.last(),
                Some(ver) => e
                    .versions
                    .iter()
                    .find(|x| x.version.eq_ignore_ascii_case(ver)),
            }
            .ok_or_else(|| cert_not_found(&n))?;
            let mut b = cert_bundle(v, e, cv);
            b["policy"] = policy_json(v, e);
            Ok(Resp::json(200, &b))
        }
        Route::Versions(n) => {
            let e = entry(&n)?;
            let items = e
                .versions
                .iter()
                .map(|cv| cert_item(v, e, cv, true))
                .collect();
            Ok(page(req, v, items))
        }
        Route::Policy(n) => Ok(Resp::json(200, &policy_json(v, entry(&n)?))),
        Route::List => {
            let items = v
                .certificates
                .values()
                .filter_map(|e| e.versions.last().map(|cv| cert_item(v, e, cv, false)))
                .collect();
            Ok(page(req, v, items))
        }
        Route::GetKey(n, ver) => {
            let kv = key_version(v, &n, ver.as_deref())?;
            Ok(Resp::json(200, &key_bundle(v, &n, kv)))
        }
        Route::Sign(n, ver) => {
            let kv = key_version(v, &n, ver.as_deref())?;
            sign(req, v, &n, kv)
        }
    }
}

fn key_version<'a>(v: &'a Vault, n: &str, ver: Option<&str>) -> Result<&'a KeyVersion, Resp> {
    let e = v
        .keys
        .get(&n.to_ascii_lowercase())
        .ok_or_else(|| key_not_found(n))?;
    match ver {
        None => e.versions.last(),
        Some(ver) => e
            .versions
            .iter()
            .find(|k| k.version.eq_ignore_ascii_case(ver)),
    }
    .ok_or_else(|| key_not_found(&format!("{n}/{}", ver.unwrap_or_default())))
}

/// `POST /keys/{name}/{version}/sign`: the caller's digest, signed in the vault. The digest
/// must be as long as the algorithm's hash (the service signs what it is given; a wrong length
/// is refused as a bad parameter — the exact text is a decision).
fn sign(req: &Req, v: &Vault, n: &str, kv: &KeyVersion) -> Result<Resp, Resp> {
    if !kv.enabled {
        return Err(error_inner(
            403,
            "Forbidden",
            "Operation sign is not allowed on a disabled key.",
            "KeyDisabled",
        ));
    }
    let b = body_obj(req)?;
    let alg_s = b
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("The request body must contain 'alg'."))?;
    let alg = SignAlg::parse(alg_s).ok_or_else(|| bad(&format!("Invalid algorithm '{alg_s}'.")))?;
    let digest = b
        .get("value")
        .and_then(Value::as_str)
        .and_then(b64url_decode)
        .ok_or_else(|| bad("The request body must contain 'value' as base64url."))?;
    let sig = kv.key.sign_digest(alg, &digest).map_err(|e| match e {
        crypto::CryptoError::AlgorithmMismatch => bad(&format!(
            "Algorithm {alg_s} is not supported for key type {}.",
            kv.key.kind.kty()
        )),
        crypto::CryptoError::DigestLength => bad(&format!(
            "Invalid digest length {} for algorithm {alg_s}: expected {}.",
            digest.len(),
            alg.digest_len()
        )),
        other => error(500, "InternalError", &other.to_string()),
    })?;
    Ok(Resp::json(
        200,
        &json!({"kid": kid(v, n, &kv.version), "value": b64url(&sig)}),
    ))
}

fn kid(v: &Vault, n: &str, ver: &str) -> String {
    format!("{}/keys/{n}/{ver}", base(v))
}

fn key_bundle(v: &Vault, n: &str, kv: &KeyVersion) -> Value {
    let mut key = kv.jwk.clone();
    key.insert("kid".into(), kid(v, n, &kv.version).into());
    let ops: &[&str] = match kv.key.kind {
        KeyKind::Rsa(_) => &[
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
            "encrypt",
            "decrypt",
        ],
        KeyKind::EcP256 => &["sign", "verify"],
    };
    key.insert("key_ops".into(), json!(ops));
    json!({
        "key": key,
        "attributes": {
            "enabled": kv.enabled, "nbf": kv.nbf, "exp": kv.exp, "created": kv.created,
            "updated": kv.created, "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": RECOVERABLE_DAYS, "exportable": kv.exportable,
        },
        "managed": true,
    })
}

fn cert_attributes(cv: &CertVersion) -> Value {
    json!({
        "enabled": cv.enabled, "nbf": cv.nbf, "exp": cv.exp, "created": cv.created,
        "updated": cv.created, "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RECOVERABLE_DAYS,
    })
}

fn cert_bundle(v: &Vault, e: &CertEntry, cv: &CertVersion) -> Value {
    let b = base(v);
    json!({
        "id": format!("{b}/certificates/{}/{}", e.name, cv.version),
        "kid": format!("{b}/keys/{}/{}", e.name, cv.version),
        "sid": format!("{b}/secrets/{}/{}", e.name, cv.version),
        "x5t": crypto::x5t(&cv.cer),
        "cer": b64(&cv.cer),
        "attributes": cert_attributes(cv),
        "tags": cv.tags,
    })
}

/// A list item (`CertificateItem`): id, x5t, attributes (versions carry the version's id).
fn cert_item(v: &Vault, e: &CertEntry, cv: &CertVersion, versioned: bool) -> Value {
    let id = if versioned {
        format!("{}/certificates/{}/{}", base(v), e.name, cv.version)
    } else {
        format!("{}/certificates/{}", base(v), e.name)
    };
    json!({"id": id, "x5t": crypto::x5t(&cv.cer), "attributes": cert_attributes(cv), "tags": cv.tags})
}

fn policy_json(v: &Vault, e: &CertEntry) -> Value {
    let p = &e.policy;
    let mut key_props =
        json!({"exportable": p.exportable, "kty": p.kind.kty(), "reuse_key": p.reuse_key});
    match p.kind {
        KeyKind::Rsa(bits) => key_props["key_size"] = json!(bits),
        KeyKind::EcP256 => {
            key_props["key_size"] = json!(256);
            key_props["crv"] = json!("P-256");
        }
    }
    let key_usage: &[&str] = match p.kind {
        KeyKind::Rsa(_) => &["digitalSignature", "keyEncipherment"],
        KeyKind::EcP256 => &["digitalSignature"],
    };
    let mut x509 = json!({
        "subject": p.subject, "ekus": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
        "key_usage": key_usage, "validity_months": p.validity_months,
    });
    if !p.dns_names.is_empty() {
        x509["sans"] = json!({"dns_names": p.dns_names});
    }
    json!({
        "id": format!("{}/certificates/{}/policy", base(v), e.name),
        "key_props": key_props,
        "secret_props": {"contentType": if p.pem { PEM } else { PKCS12 }},
        "x509_props": x509,
        "lifetime_actions": p.lifetime_actions,
        "issuer": {"name": "Self"},
        "attributes": {"enabled": true, "created": p.created, "updated": p.updated},
    })
}

/// The certificate operation: the pending one, else the last completed one.
fn operation_json(v: &Vault, e: &CertEntry, _now: DateTime<Utc>) -> Option<Value> {
    let id = format!("{}/certificates/{}/pending", base(v), e.name);
    if let Some(p) = &e.pending {
        return Some(json!({
            "id": id, "issuer": {"name": "Self"}, "csr": b64(&p.csr),
            "cancellation_requested": false, "status": "inProgress",
            "status_details": "Pending certificate created. Certificate request is in progress. This may take some time based on the issuer provider. Please check again later.",
            "request_id": p.request_id,
        }));
    }
    let (rid, _) = e.completed.as_ref()?;
    Some(json!({
        "id": id, "issuer": {"name": "Self"}, "cancellation_requested": false,
        "status": "completed", "target": format!("{}/certificates/{}", base(v), e.name),
        "request_id": rid,
    }))
}

/// The operation answer for a create that has just started.
fn pending_operation_json(
    vault: &Vault,
    name: &str,
    policy: &Policy,
    pending: &Pending,
    now: DateTime<Utc>,
) -> Option<Value> {
    let tmp = CertEntry {
        name: name.to_string(),
        policy: policy.clone(),
        versions: vec![],
        pending: Some(pending.clone()),
        completed: None,
    };
    operation_json(vault, &tmp, now)
}

/// One operation at a time per certificate, and no certificate over a plain secret's name.
fn refuse_conflicts(
    vault: &Vault,
    existing: Option<&CertEntry>,
    lname: &str,
    n: &str,
) -> Result<(), Resp> {
    if existing.is_some_and(|e| e.pending.is_some()) {
        // A decision: one operation at a time per certificate (the spec models a single
        // `/pending` per name).
        return Err(error(
            409,
            "Conflict",
            &format!(
                "Certificate {n} has a pending operation; wait for it or delete it before creating another version."
            ),
        ));
    }
    if vault.secrets.contains_key(lname) && existing.is_none() {
        return Err(error(
            409,
            "Conflict",
            &format!("A secret named {n} already exists and is not managed by a certificate."),
        ));
    }
    Ok(())
}

fn create(
    st: &mut Tenant,
    req: &Req,
    vname: &str,
    n: &str,
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    let b = body_obj(req)?;
    let lname = n.to_ascii_lowercase();
    let issue = issue_seconds(st);
    let vault = st
        .vaults
        .get_mut(vname)
        .ok_or_else(|| error(404, "VaultNotFound", "vault vanished"))?;
    let existing = vault.certificates.get(&lname);
    refuse_conflicts(vault, existing, &lname, n)?;
    let t = now.timestamp();
    let policy = match (b.get("policy"), existing) {
        (Some(p), _) if !p.is_null() => parse_policy(p, existing.map(|e| &e.policy), t)?,
        (_, Some(e)) => e.policy.clone(),
        (_, None) => {
            return Err(bad(
                "A policy is required to create the first version of a certificate.",
            ));
        }
    };
    let previous_key = existing
        .filter(|_| policy.reuse_key)
        .and_then(|_| vault.keys.get(&lname))
        .and_then(|k| k.versions.last())
        .map(|k| k.key.clone());
    let mut pending = make_version(&policy, previous_key, now, issue)?;
    pending.cert.tags = crate::keyvault::tags_of(b.get("tags"))?.unwrap_or_default();
    let name = existing.map_or_else(|| n.to_string(), |e| e.name.clone());
    let op_body = pending_operation_json(vault, &name, &policy, &pending, now);
    let vault_base = base(vault);
    let entry = vault
        .certificates
        .entry(lname)
        .or_insert_with(|| CertEntry {
            name: n.to_string(),
            policy: policy.clone(),
            versions: vec![],
            pending: None,
            completed: None,
        });
    entry.policy = policy;
    entry.pending = Some(pending);
    let location = format!(
        "{}/certificates/{}/pending?api-version={}",
        vault_base,
        entry.name,
        req.q("api-version").unwrap_or("7.5")
    );
    Ok(Resp::json(202, &op_body.unwrap_or(json!({})))
        .header("location", location)
        .header("retry-after", issue.to_string()))
}

/// Emulated seconds from create to the completed operation: [`SELF_ISSUE_SECONDS`] unless the
/// scenario's `certificateIssueSeconds` uncertainty says otherwise.
pub(crate) fn issue_seconds(st: &Tenant) -> i64 {
    st.uncertainties
        .certificate_issue_seconds
        .map_or(SELF_ISSUE_SECONDS, |s| s.min(i64::MAX as u64) as i64)
}

/// `PATCH /certificates/{name}/{version}` (certificates.json `UpdateCertificate`,
/// `CertificateUpdateParameters {policy, attributes, tags}` → `CertificateBundle`): replaces
/// the version's tags and its `enabled` attribute (an empty version: the latest). The
/// policy part of the body is not served (the rotator sends none): refused, not ignored.
fn update(
    st: &mut Tenant,
    req: &Req,
    vname: &str,
    n: &str,
    ver: Option<&str>,
) -> Result<Resp, Resp> {
    let b = body_obj(req)?;
    if b.get("policy").is_some_and(|p| !p.is_null()) {
        return Err(bad(
            "The emulator does not update a certificate's policy through UpdateCertificate.",
        ));
    }
    let tags = crate::keyvault::tags_of(b.get("tags"))?;
    let enabled = match b.get("attributes").and_then(|a| a.get("enabled")) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(e)) => Some(*e),
        Some(_) => return Err(bad("attributes.enabled must be a boolean.")),
    };
    let vault = st
        .vaults
        .get_mut(vname)
        .ok_or_else(|| error(404, "VaultNotFound", "vault vanished"))?;
    let e = vault
        .certificates
        .get_mut(&n.to_ascii_lowercase())
        .ok_or_else(|| cert_not_found(n))?;
    let cv = match ver {
        None => e.versions.last_mut(),
        Some(ver) => e
            .versions
            .iter_mut()
            .find(|x| x.version.eq_ignore_ascii_case(ver)),
    }
    .ok_or_else(|| cert_not_found(n))?;
    if let Some(t) = tags {
        cv.tags = t;
    }
    if let Some(en) = enabled {
        cv.enabled = en;
    }
    let cv = cv.clone();
    let e = vault
        .certificates
        .get(&n.to_ascii_lowercase())
        .ok_or_else(|| cert_not_found(n))?;
    let mut out = cert_bundle(vault, e, &cv);
    out["policy"] = policy_json(vault, e);
    Ok(Resp::json(200, &out))
}

/// Makes the key (or reuses it), the self-signed certificate and its secret.
fn make_version(
    p: &Policy,
    reuse: Option<PrivateKey>,
    now: DateTime<Utc>,
    issue: i64,
) -> Result<Pending, Resp> {
    let internal = |e: crypto::CryptoError| error(500, "InternalError", &e.to_string());
    let key = match reuse {
        Some(k) => k,
        None => PrivateKey::generate(p.kind).map_err(internal)?,
    };
    // Backdated by five minutes against clock skew, as the Self issuer's certificates are (a
    // decision); valid for the policy's months.
    let nbf = now - Duration::minutes(5);
    let exp = now
        .checked_add_months(Months::new(p.validity_months))
        .ok_or_else(|| bad("validity_months is too large."))?;
    let cer =
        crypto::self_signed(&key, &p.subject, &p.dns_names, nbf, exp).map_err(|e| match e {
            crypto::CryptoError::Subject(s) => bad(&format!("Invalid subject or DNS name: {s}")),
            other => internal(other),
        })?;
    let info: CertInfo =
        crypto::parse_cert(&cer).ok_or_else(|| internal(crypto::CryptoError::Sign))?;
    let value =
        crypto::secret_value(&cer, p.exportable.then_some(&key), p.pem).map_err(internal)?;
    let version = hex32();
    let t = now.timestamp();
    let due = now + Duration::seconds(issue);
    let created = due.timestamp();
    Ok(Pending {
        request_id: hex32(),
        csr: csr(&key, &p.subject).unwrap_or_default(),
        due,
        cert: CertVersion {
            version: version.clone(),
            cer,
            nbf: info.nbf,
            exp: info.exp,
            created,
            enabled: true,
            tags: Default::default(),
        },
        key: KeyVersion {
            version: version.clone(),
            key,
            exportable: p.exportable,
            jwk: info.jwk,
            nbf: info.nbf,
            exp: info.exp,
            created,
            enabled: true,
        },
        secret: SecretVersion {
            version,
            value,
            content_type: Some(if p.pem { PEM } else { PKCS12 }.to_string()),
            tags: Default::default(),
            enabled: true,
            nbf: Some(info.nbf),
            exp: Some(info.exp),
            created: t.max(created),
            updated: t.max(created),
        },
    })
}

fn csr(key: &PrivateKey, subject: &str) -> Option<Vec<u8>> {
    crypto::csr(key, subject).ok()
}

fn get_obj<'a>(v: &'a Value, k: &str) -> Result<Option<&'a Map<String, Value>>, Resp> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(bad(&format!("policy.{k} must be an object."))),
    }
}

/// A policy member that is present and not null.
fn member<'a>(m: Option<&'a Map<String, Value>>, k: &str) -> Option<&'a Value> {
    m.and_then(|m| m.get(k)).filter(|v| !v.is_null())
}

/// `key_props.kty` / `key_size` / `crv` (unset: the previous policy's, else RSA 2048).
fn parse_key_kind(kp: Option<&Map<String, Value>>, prev: Option<&Policy>) -> Result<KeyKind, Resp> {
    let kty = member(kp, "kty")
        .and_then(Value::as_str)
        .map(str::to_string);
    let kind = match (kty.as_deref(), prev) {
        (None, Some(pr)) if member(kp, "key_size").is_none() && member(kp, "crv").is_none() => {
            pr.kind
        }
        (None | Some("RSA"), _) => match member(kp, "key_size").map(|v| v.as_u64()) {
            None => KeyKind::Rsa(2048),
            Some(Some(n @ (2048 | 3072 | 4096))) => KeyKind::Rsa(n as u32),
            Some(_) => return Err(bad("key_size must be 2048, 3072 or 4096 for RSA keys.")),
        },
        (Some("EC"), _) => match member(kp, "crv").and_then(Value::as_str) {
            None | Some("P-256") => KeyKind::EcP256,
            Some(c) => return Err(bad(&format!("Curve '{c}' is not emulated: only P-256 is."))),
        },
        (Some(k @ ("RSA-HSM" | "EC-HSM")), _) => {
            return Err(bad(&format!(
                "Key type {k} needs a Premium vault (HSM-protected keys); the emulated vault is Standard."
            )));
        }
        (Some(k), _) => return Err(bad(&format!("Invalid key type '{k}'."))),
    };
    Ok(kind)
}

/// `x509_props`: subject, DNS names, validity in months.
fn parse_x509(
    xp: Option<&Map<String, Value>>,
    prev: Option<&Policy>,
) -> Result<(String, Vec<String>, u32), Resp> {
    let subject = match member(xp, "subject").map(|v| v.as_str()) {
        Some(Some(sub)) if !sub.trim().is_empty() => sub.to_string(),
        Some(_) => return Err(bad("x509_props.subject must be a non-empty string.")),
        None => prev
            .map(|p| p.subject.clone())
            .ok_or_else(|| bad("x509_props.subject is required."))?,
    };
    let dns_names = match member(xp, "sans").and_then(|v| v.get("dns_names")) {
        None => prev.map(|p| p.dns_names.clone()).unwrap_or_default(),
        Some(v) => serde_json::from_value::<Vec<String>>(v.clone())
            .map_err(|_| bad("sans.dns_names must be strings."))?,
    };
    let validity_months = match member(xp, "validity_months").map(|v| v.as_u64()) {
        None => prev.map(|p| p.validity_months).unwrap_or(12),
        Some(Some(m @ 1..=1200)) => m as u32,
        Some(_) => {
            return Err(bad(
                "validity_months must be a whole number of months from 1 to 1200.",
            ));
        }
    };
    Ok((subject, dns_names, validity_months))
}

/// Parses a `CertificatePolicy`; unset members keep the previous policy's (or the defaults:
/// RSA 2048, exportable, PKCS#12, 12 months, as the SDKs' default policy).
fn parse_policy(p: &Value, prev: Option<&Policy>, t: i64) -> Result<Policy, Resp> {
    let kp = get_obj(p, "key_props")?;
    let sp = get_obj(p, "secret_props")?;
    let xp = get_obj(p, "x509_props")?;
    let issuer = get_obj(p, "issuer")?
        .and_then(|i| i.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("Self");
    if !issuer.eq_ignore_ascii_case("Self") {
        return Err(bad(&format!(
            "Issuer '{issuer}' is not emulated: only issuer 'Self' is (integrated CAs and 'Unknown' need an issuer account or a merge)."
        )));
    }
    let kind = parse_key_kind(kp, prev)?;
    let boolean = |k: &str, d: bool| -> Result<bool, Resp> {
        match member(kp, k) {
            None => Ok(d),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| bad(&format!("key_props.{k} must be a boolean."))),
        }
    };
    let exportable = boolean("exportable", prev.map(|p| p.exportable).unwrap_or(true))?;
    let reuse_key = boolean("reuse_key", prev.map(|p| p.reuse_key).unwrap_or(false))?;
    let pem = match member(sp, "contentType").map(|v| v.as_str()) {
        None => prev.map(|p| p.pem).unwrap_or(false),
        Some(Some(PKCS12)) => false,
        Some(Some(PEM)) => true,
        Some(other) => {
            return Err(bad(&format!(
                "Invalid secret content type {}: use {PKCS12} or {PEM}.",
                other.unwrap_or("(not a string)")
            )));
        }
    };
    let (subject, dns_names, validity_months) = parse_x509(xp, prev)?;
    let lifetime_actions = match p.get("lifetime_actions") {
        None | Some(Value::Null) => prev
            .map(|p| p.lifetime_actions.clone())
            .unwrap_or_else(|| json!([{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}])),
        Some(v @ Value::Array(_)) => v.clone(),
        Some(_) => return Err(bad("lifetime_actions must be an array.")),
    };
    Ok(Policy {
        kind,
        exportable,
        reuse_key,
        pem,
        subject,
        dns_names,
        validity_months,
        lifetime_actions,
        created: prev.map(|p| p.created).unwrap_or(t),
        updated: t,
    })
}

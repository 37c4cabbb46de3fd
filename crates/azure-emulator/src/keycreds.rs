//! Certificate credentials of applications (`keyCredentials`): Graph `addKey` / `removeKey`
//! with their proof-of-possession JWT, `PATCH /applications/{id}` replacing the whole
//! `keyCredentials` collection, the `key` returned on `$select=keyCredentials`, and the token
//! endpoint's `client_assertion` check (entra.rs calls [`check_assertion`]).
//!
//! Sources:
//! - addKey: microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/
//!   application-addkey.md ("type, usage and key are required"; `AsymmetricX509Cert` with usage
//!   `Verify`; the proof is "signed using the private key of one of the application's existing
//!   valid certificates", `aud` `00000002-0000-0000-c000-000000000000`, `iss` "the id of the
//!   application", `exp` = `nbf` + 10 minutes; apps without a valid certificate cannot use it;
//!   "An application does not need any specific permission to roll its own keys").
//!   removeKey: application-removekey.md (keyId + proof, 204).
//! - A refused proof: 401 `Authentication_MissingOrMalformed` "Access Token missing or
//!   malformed." (recorded in microsoftgraph/microsoft-graph-docs issues 10686 and 14626).
//! - `PATCH` replaces the collection: application-update.md and resources/keycredential.md
//!   (`key` "Returned only on $select for a single object ... otherwise, it's always null");
//!   the erasure reported in msgraph-sdk-powershell#779.
//! - Tenant policy `asymmetricKeyLifetime` (resources/keycredentialconfiguration.md): refused
//!   with `CredentialInvalidLifetimeAsPerAppPolicy`, the code the password restriction uses.
//! - Client assertions: Microsoft identity platform "certificate credentials"
//!   (entra-docs docs/identity-platform/certificate-credentials.md: header `alg`, `typ`,
//!   `x5t` or `x5t#S256`; claims `aud` = the token endpoint, `exp`, `iss` = `sub` = client id,
//!   `jti`, `nbf`); error codes from entra-docs docs/identity-platform/reference-error-codes.md
//!   (AADSTS700027 "Client assertion failed signature validation", AADSTS700024 "Client
//!   assertion is not within its valid time range"), the reason texts as recorded in answers
//!   ("The key was not found.", "The key used is expired."; help.univention.com topic 23196),
//!   AADSTS50012 for the audience (AzureAD/azure-activedirectory-library-for-python#79) and
//!   AADSTS50027 for a malformed JWT (panva/openid-client#348).

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::crypto::{self, Jws};
use crate::graph::error;
use crate::jwt::Claims;
use crate::model::{App, Certificate, Tenant};
use crate::server::{Req, Resp};
use crate::util::{b64, b64_decode, iso};

/// The proof's audience: Azure AD Graph's application id (application-addkey.md).
pub const PROOF_AUD: &str = "00000002-0000-0000-c000-000000000000";
/// The longest proof lifetime Graph accepts (`exp` = `nbf` + 10 minutes).
pub const PROOF_MAX_SECONDS: i64 = 600;
/// Clock skew tolerated on `nbf` (a decision: the usual five minutes of Entra's validators).
const SKEW_SECONDS: i64 = 300;

/// The time a JWT's `nbf` / `exp` are checked against: the wall clock, as for the access
/// tokens entra.rs mints. Clients (MSAL, the rotator) stamp their JWTs with the machine's
/// clock; the emulated clock (advanced by tests) governs the tenant's data — key validity and
/// replication — not the clients' clocks.
/// A JWT NumericDate: seconds, possibly fractional (RFC 7519 section 2; MSAL Python sends
/// `time.time() + 600`, a float).
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    })
}

fn wall_clock() -> i64 {
    Utc::now().timestamp()
}

/// One key credential as the oracle sees it: no key material, the certificate by its
/// `x5t#S256` and its SHA-1 thumbprint (upper-case hex, as `WEBSITE_LOAD_CERTIFICATES` names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub x5t_s256: String,
    pub thumbprint: String,
}

impl KeyRecord {
    pub fn of(k: &Certificate) -> Self {
        KeyRecord {
            key_id: k.key_id,
            display_name: k.display_name.clone(),
            start: k.start,
            end: k.end,
            x5t_s256: crypto::x5t_s256(&k.der),
            thumbprint: crypto::sha1_hex_upper(&k.der),
        }
    }

    /// Entra accepts the key at `t` (within its validity).
    pub fn valid_at(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// One write that changed an application's keyCredentials (addKey, removeKey or PATCH),
/// whatever the answer was (a fault may have replaced it after the change landed): the
/// collection before and after, and who wrote it. The oracle diffs every one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWrite {
    pub time: DateTime<Utc>,
    pub app_id: Uuid,
    /// Client id (appid claim) of the writer.
    pub caller: Uuid,
    /// `addKey`, `removeKey` or `updateApplication`.
    pub operation: &'static str,
    pub before: Vec<KeyRecord>,
    pub after: Vec<KeyRecord>,
}

/// The application's keys as records.
pub fn records(app: &App) -> Vec<KeyRecord> {
    app.certificates.iter().map(KeyRecord::of).collect()
}

/// A key credential as Graph answers it; `key` only when asked for (`$select`).
pub fn key_json(k: &Certificate, with_key: bool) -> Value {
    json!({
        "customKeyIdentifier": b64(&sha1(&k.der)),
        "displayName": k.display_name,
        "endDateTime": iso(k.end),
        "key": if with_key { Value::String(b64(&k.der)) } else { Value::Null },
        "keyId": k.key_id,
        "startDateTime": iso(k.start),
        "type": k.key_type,
        "usage": k.usage,
    })
}

fn sha1(der: &[u8]) -> Vec<u8> {
    crate::util::b64url_decode(&crypto::x5t(der)).unwrap_or_default()
}

/// On `GET /applications/{id}?$select=keyCredentials` the keys carry their `key`.
pub fn fill_keys(v: &mut Value, app: &App) {
    if v.get("keyCredentials").is_some() {
        v["keyCredentials"] = app.certificates.iter().map(|k| key_json(k, true)).collect();
    }
}

fn proof_refused() -> Resp {
    error(
        401,
        "Authentication_MissingOrMalformed",
        "Access Token missing or malformed.",
    )
}

fn bad(msg: &str) -> Resp {
    error(400, "Request_BadRequest", msg)
}

/// Graph's check of an addKey/removeKey proof: signed by a currently valid key credential of
/// `app`, `aud` Azure AD Graph, `iss` the application's object id, inside its `nbf`..`exp`
/// window of at most ten minutes.
pub fn check_proof(app: &App, proof: &str, now: DateTime<Utc>) -> Result<(), Resp> {
    let jws = crypto::parse_jws(proof).ok_or_else(proof_refused)?;
    let claim = |k: &str| jws.claims.get(k);
    let int = |k: &str| claim(k).and_then(numeric_date);
    let (Some(nbf), Some(exp)) = (int("nbf"), int("exp")) else {
        return Err(proof_refused());
    };
    let t = wall_clock();
    let aud_ok = claim("aud").and_then(Value::as_str) == Some(PROOF_AUD);
    let iss_ok = claim("iss")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        == Some(app.object_id);
    let window_ok =
        exp > nbf && exp - nbf <= PROOF_MAX_SECONDS && nbf <= t + SKEW_SECONDS && t < exp;
    if !(aud_ok && iss_ok && window_ok) {
        return Err(proof_refused());
    }
    let signed = app
        .certificates
        .iter()
        .filter(|k| k.start <= now && now < k.end)
        .filter_map(|k| crypto::parse_cert(&k.der))
        .any(|info| jws.verifies_with(&info));
    if signed { Ok(()) } else { Err(proof_refused()) }
}

/// A `keyCredential` from a request body: type, usage and a DER certificate; the validity
/// comes from the certificate unless the body narrows it.
fn parse_key_credential(v: &Value, now: DateTime<Utc>) -> Result<Certificate, Resp> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let key_type = s("type").ok_or_else(|| bad("keyCredential.type is required."))?;
    let usage = s("usage").ok_or_else(|| bad("keyCredential.usage is required."))?;
    match (key_type, usage) {
        ("AsymmetricX509Cert", "Verify") => {}
        ("X509CertAndPassword", "Sign") => {
            return Err(bad(
                "Key type X509CertAndPassword (signing keys) is not emulated.",
            ));
        }
        _ => {
            return Err(bad(&format!(
                "Invalid key credential: type '{key_type}' does not go with usage '{usage}' (AsymmetricX509Cert needs Verify)."
            )));
        }
    }
    let der = s("key")
        .and_then(b64_decode)
        .ok_or_else(|| bad("keyCredential.key is required: the base64 DER certificate."))?;
    let info = crypto::parse_cert(&der).ok_or_else(|| {
        bad("keyCredential.key is not a DER X.509 certificate with an RSA or P-256 key.")
    })?;
    let date = |k: &str, dflt: i64| -> Result<DateTime<Utc>, Resp> {
        match v.get(k) {
            None | Some(Value::Null) => DateTime::from_timestamp(dflt, 0).ok_or_else(|| bad("bad certificate dates")),
            Some(Value::String(t)) => DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| bad(&format!("Cannot convert the literal '{t}' to the expected type 'Edm.DateTimeOffset'."))),
            Some(_) => Err(bad(&format!("{k} must be a string."))),
        }
    };
    let start = date("startDateTime", info.nbf)?;
    let end = date("endDateTime", info.exp)?;
    if end <= start {
        return Err(bad(
            "Key credential end date time must be greater than start date time.",
        ));
    }
    let key_id = match s("keyId") {
        None => Uuid::new_v4(),
        Some(k) => {
            Uuid::parse_str(k).map_err(|_| bad(&format!("Invalid keyId '{k}': not a GUID.")))?
        }
    };
    Ok(Certificate {
        key_id,
        display_name: s("displayName").map(str::to_string),
        start,
        end,
        der,
        usage: usage.to_string(),
        key_type: key_type.to_string(),
        added_at: now,
    })
}

/// The tenant policy's certificate lifetime cap (keyCredentialConfiguration
/// `asymmetricKeyLifetime`), unless the caller is exempt.
fn lifetime_allowed(st: &Tenant, c: &Claims, k: &Certificate) -> Result<(), Resp> {
    let Some((id, p, exempt)) = &st.app_policy else {
        return Ok(());
    };
    match p.max_certificate_lifetime_days {
        Some(days) if !exempt.contains(&c.oid) && k.end - k.start > Duration::days(days as i64) => {
            Err(error(
                400,
                "CredentialInvalidLifetimeAsPerAppPolicy",
                &format!(
                    "Credential lifetime exceeds the max value allowed as per assigned policy '{id}'."
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Graph's refusal of an application grown past its size (`Scenario::key_credential_limit`).
fn within_limit(st: &Tenant, keys: usize) -> Result<(), Resp> {
    if keys <= st.key_credential_limit {
        return Ok(());
    }
    Err(error(
        400,
        "Directory_ResourceSizeExceeded",
        "The size of the object has exceeded its limit. Please reduce the number of values and retry your request",
    ))
}

fn body(req: &Req) -> Result<Value, Resp> {
    if req.body.is_empty() {
        return Err(error(
            400,
            "BadRequest",
            "Empty Payload. JSON content expected.",
        ));
    }
    req.json_body().map_err(|m| bad(&m))
}

fn proof_of(b: &Value, app: &App, now: DateTime<Utc>) -> Result<(), Resp> {
    let proof = b
        .get("proof")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("The request body must contain 'proof'."))?;
    check_proof(app, proof, now)
}

/// `POST /applications/{id}/addKey`.
pub fn add_key(
    st: &mut Tenant,
    i: usize,
    req: &Req,
    c: &Claims,
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    let b = body(req)?;
    let kc = b
        .get("keyCredential")
        .ok_or_else(|| bad("The request body must contain 'keyCredential'."))?;
    let k = parse_key_credential(kc, now)?;
    proof_of(&b, &st.apps[i], now)?;
    lifetime_allowed(st, c, &k)?;
    if st.apps[i].certificates.iter().any(|x| x.key_id == k.key_id) {
        return Err(bad(&format!(
            "A key credential with keyId {} already exists.",
            k.key_id
        )));
    }
    let mut v = key_json(&k, false);
    v["@odata.context"] =
        json!("https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.keyCredential");
    within_limit(st, st.apps[i].certificates.len() + 1)?;
    st.apps[i].certificates.push(k);
    Ok(Resp::json(200, &v))
}

/// `POST /applications/{id}/removeKey`: by exact keyId; unknown ids are 404 (as removePassword).
pub fn remove_key(st: &mut Tenant, i: usize, req: &Req, now: DateTime<Utc>) -> Result<Resp, Resp> {
    let b = body(req)?;
    let kid = b
        .get("keyId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("The request body must contain 'keyId'."))?;
    let kid =
        Uuid::parse_str(kid).map_err(|_| bad(&format!("Invalid keyId '{kid}': not a GUID.")))?;
    proof_of(&b, &st.apps[i], now)?;
    let before = st.apps[i].certificates.len();
    st.apps[i].certificates.retain(|k| k.key_id != kid);
    if st.apps[i].certificates.len() == before {
        return Err(error(
            404,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{kid}' does not exist or one of its queried reference-property objects are not present."
            ),
        ));
    }
    Ok(Resp::empty(204))
}

/// `PATCH /applications/{id}`: `keyCredentials` replaces the whole collection (every entry
/// with its `key`; a keyId kept from the old collection keeps its replication age).
pub fn patch(
    st: &mut Tenant,
    i: usize,
    req: &Req,
    c: &Claims,
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    let b = body(req)?;
    let obj = b
        .as_object()
        .ok_or_else(|| bad("The request body must be a JSON object."))?;
    // OData annotations (`@odata.type`, which msgraph-sdk sends) are not properties.
    if let Some(k) = obj
        .keys()
        .find(|k| k.as_str() != "keyCredentials" && !k.starts_with('@'))
    {
        return Err(bad(&format!(
            "Updating '{k}' is not emulated: PATCH takes keyCredentials only."
        )));
    }
    let Some(list) = obj.get("keyCredentials") else {
        return Ok(Resp::empty(204));
    };
    let list = list
        .as_array()
        .ok_or_else(|| bad("keyCredentials must be an array."))?;
    let mut new = Vec::with_capacity(list.len());
    for item in list {
        let mut k = parse_key_credential(item, now)?;
        if let Some(old) = st.apps[i]
            .certificates
            .iter()
            .find(|o| o.key_id == k.key_id)
        {
            k.added_at = old.added_at;
        } else {
            lifetime_allowed(st, c, &k)?;
        }
        if new.iter().any(|x: &Certificate| x.key_id == k.key_id) {
            return Err(bad(&format!("keyId {} appears twice.", k.key_id)));
        }
        new.push(k);
    }
    within_limit(st, new.len())?;
    st.apps[i].certificates = new;
    Ok(Resp::empty(204))
}

/// Why Entra refuses a client assertion: (AADSTS code, text).
pub type Refusal = (u64, String);

/// Entra's check of a `client_assertion` for `app` at the token endpoint of `tenant_seg`.
pub fn check_assertion(
    st: &Tenant,
    app: &App,
    assertion: &str,
    tenant_seg: &str,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let malformed = || (50027, "JWT token is invalid or malformed.".to_string());
    let jws = crypto::parse_jws(assertion).ok_or_else(malformed)?;
    let cl = |k: &str| jws.claims.get(k).and_then(Value::as_str);
    let app_id = app.app_id.to_string();
    if cl("iss") != Some(app_id.as_str())
        || cl("sub") != Some(app_id.as_str())
        || cl("jti").is_none_or(str::is_empty)
    {
        return Err(malformed());
    }
    let aud_ok = cl("aud").is_some_and(|a| {
        let a = a.trim_end_matches('/').to_ascii_lowercase();
        [
            tenant_seg.to_string(),
            st.tenant_id.to_string(),
            st.tenant_domain.clone(),
        ]
        .iter()
        .any(|t| {
            let t = t.to_ascii_lowercase();
            a == format!("https://login.microsoftonline.com/{t}/oauth2/v2.0/token")
                || a == format!("https://login.microsoftonline.com/{t}/oauth2/token")
        })
    });
    if !aud_ok {
        return Err((
            50012,
            "Client assertion audience claim does not match Realm issuer.".into(),
        ));
    }
    let t = wall_clock();
    let int = |k: &str| jws.claims.get(k).and_then(numeric_date);
    let in_time =
        int("exp").is_some_and(|e| t < e) && int("nbf").is_none_or(|n| n <= t + SKEW_SECONDS);
    if !in_time {
        return Err((
            700024,
            "Client assertion is not within its valid time range.".into(),
        ));
    }
    key_for(st, app, &jws, now)
}

/// Finds the registered key the assertion names (`x5t#S256` or `x5t`) and checks it.
fn key_for(st: &Tenant, app: &App, jws: &Jws, now: DateTime<Utc>) -> Result<(), Refusal> {
    let h = |k: &str| jws.header.get(k).and_then(Value::as_str);
    let (thumb, matches): (&str, fn(&[u8]) -> String) = match (h("x5t#S256"), h("x5t")) {
        (Some(t), _) => (t, crypto::x5t_s256),
        (None, Some(t)) => (t, crypto::x5t),
        (None, None) => {
            return Err((700027, "Client assertion failed signature validation. [Reason - The header names no key (x5t or x5t#S256).]".into()));
        }
    };
    let delay = st
        .uncertainties
        .key_replication_seconds
        .unwrap_or(st.replication_delay);
    let replicated = |k: &&Certificate| now >= k.added_at + Duration::seconds(delay as i64);
    let Some(k) = app
        .certificates
        .iter()
        .filter(replicated)
        .find(|k| same_thumbprint(&matches(&k.der), thumb))
    else {
        return Err((
            700027,
            format!(
                "Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '{}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
                safe(thumb),
                app.app_id
            ),
        ));
    };
    if now >= k.end {
        return Err((
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '{}', Found key 'Start={}, End={}']",
                safe(thumb),
                iso(k.start),
                iso(k.end)
            ),
        ));
    }
    if now < k.start {
        return Err((
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - The key used is not yet valid., Thumbprint of key used by client: '{}']",
                safe(thumb)
            ),
        ));
    }
    let ok = crypto::parse_cert(&k.der).is_some_and(|info| jws.verifies_with(&info));
    if ok {
        Ok(())
    } else {
        Err((700027, "Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value.]".into()))
    }
}

/// Thumbprints compare as bytes: MSAL Python sends `x5t` padded (`urlsafe_b64encode` keeps
/// the `=`), other clients unpadded; standard-alphabet characters are read as base64url's.
fn same_thumbprint(ours: &str, theirs: &str) -> bool {
    let norm = |t: &str| -> String {
        t.trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect()
    };
    norm(ours) == norm(theirs)
}

/// A thumbprint from the caller, shortened and reduced to base64url characters before it is
/// echoed in an error text.
fn safe(t: &str) -> String {
    t.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect()
}

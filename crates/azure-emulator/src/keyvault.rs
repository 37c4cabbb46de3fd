//! Key Vault secrets data plane (`{vault}.vault.azure.net`), api-version 2025-07-01 (also 7.x
//! and 2026-*): set, get (latest with or without the trailing slash, or a version), list secrets
//! and versions with `nextLink` paging, PATCH attributes/tags, soft delete, get/list/recover/
//! purge deleted secrets.
//!
//! Order of checks, as the real service: the 401 challenge for a request without a token comes
//! before anything else (the SDKs send the first request bodiless), then the api-version, the
//! token, the route, RBAC (data actions per vault) and the body.

use axum::http::Method;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::entra::VAULT_AUD;
use crate::jwt::{Claims, TokenError, bearer, verify};
use crate::model::{DeletedSecret, SecretEntry, SecretVersion, Tenant, Vault, valid_secret_name};
use crate::server::{Req, Resp, Shared};
use crate::util::{b64url, b64url_decode, hex32, lock};

const RECOVERABLE_DAYS: i64 = 90;
const ACTION: &str = "Microsoft.KeyVault/vaults/secrets";

pub fn error(status: u16, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

pub(crate) fn error_inner(status: u16, code: &str, message: &str, inner: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"code": code, "message": message, "innererror": {"code": inner}}}),
    )
}

enum Route {
    List,
    Set(String),
    GetLatest(String),
    GetVersion(String, String),
    Versions(String),
    Update(String, Option<String>),
    Delete(String),
    ListDeleted,
    GetDeleted(String),
    Recover(String),
    Purge(String),
    Unknown,
}

fn parse(req: &Req) -> Route {
    // Keep a trailing empty segment: `/secrets/{n}/` means "latest".
    let p = req.path.strip_prefix('/').unwrap_or(&req.path);
    let segs: Vec<&str> = p.split('/').collect();
    let m = &req.method;
    let s = |x: &str| x.to_string();
    match (m, segs.as_slice()) {
        (&Method::GET, ["secrets"]) | (&Method::GET, ["secrets", ""]) => Route::List,
        (&Method::PUT, ["secrets", n]) | (&Method::PUT, ["secrets", n, ""]) if !n.is_empty() => {
            Route::Set(s(n))
        }
        (&Method::GET, ["secrets", n]) | (&Method::GET, ["secrets", n, ""]) if !n.is_empty() => {
            Route::GetLatest(s(n))
        }
        (&Method::GET, ["secrets", n, "versions"]) => Route::Versions(s(n)),
        (&Method::GET, ["secrets", n, v]) => Route::GetVersion(s(n), s(v)),
        (&Method::PATCH, ["secrets", n]) | (&Method::PATCH, ["secrets", n, ""])
            if !n.is_empty() =>
        {
            Route::Update(s(n), None)
        }
        (&Method::PATCH, ["secrets", n, v]) => Route::Update(s(n), Some(s(v))),
        (&Method::DELETE, ["secrets", n]) if !n.is_empty() => Route::Delete(s(n)),
        (&Method::GET, ["deletedsecrets"]) => Route::ListDeleted,
        (&Method::GET, ["deletedsecrets", n]) => Route::GetDeleted(s(n)),
        (&Method::POST, ["deletedsecrets", n, "recover"]) => Route::Recover(s(n)),
        (&Method::DELETE, ["deletedsecrets", n]) => Route::Purge(s(n)),
        _ => Route::Unknown,
    }
}

pub fn classify(req: &Req) -> Option<&'static str> {
    Some(match parse(req) {
        Route::List => "listSecrets",
        Route::Set(_) => "setSecret",
        Route::GetLatest(_) | Route::GetVersion(..) => "getSecret",
        Route::Versions(_) => "listSecretVersions",
        Route::Update(..) => "updateSecret",
        Route::Delete(_) => "deleteSecret",
        Route::ListDeleted => "listDeletedSecrets",
        Route::GetDeleted(_) => "getDeletedSecret",
        Route::Recover(_) => "recoverDeletedSecret",
        Route::Purge(_) => "purgeDeletedSecret",
        Route::Unknown => return crate::certificates::classify(req),
    })
}

fn challenge(tenant: Uuid, code: &str, msg: &str) -> Resp {
    error(401, "Unauthorized", &format!("{code}: {msg}")).header(
        "www-authenticate",
        format!("Bearer authorization=\"https://login.microsoftonline.com/{tenant}\", resource=\"https://vault.azure.net\""),
    )
}

fn api_version_ok(v: &str) -> bool {
    matches!(
        v,
        "7.0" | "7.1" | "7.2" | "7.3" | "7.4" | "7.5" | "7.6" | "2025-07-01"
    ) || v.starts_with("7.6-preview")
        || v.starts_with("7.5-preview")
        || v.starts_with("2025-06-01")
        || v.starts_with("2026-")
}

pub fn handle(shared: &Shared, req: &Req, _op: Option<&'static str>) -> Resp {
    let now = shared.now();
    let vault_name = req.host.trim_end_matches(".vault.azure.net").to_string();
    let mut st = lock(&shared.state);
    let tenant = st.tenant_id;
    if !st.vaults.contains_key(&vault_name) {
        // The real host would not resolve; answering is the only option here (documented).
        return error(
            404,
            "VaultNotFound",
            &format!(
                "The vault '{vault_name}' does not exist in the emulated tenant (a real client would get a DNS failure)."
            ),
        );
    }
    let claims = match authenticate(shared, req, tenant, now) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(r) = crate::certificates::handle(&mut st, req, &vault_name, &claims, now) {
        return r;
    }
    let route = parse(req);
    handle_route(&mut st, req, &vault_name, route, &claims, now)
}

/// The caller's claims, in Key Vault's order of checks: the challenge for a missing token, then
/// the api-version, then the token itself (*Authentication, requests and responses*,
/// articles/key-vault/general/authentication-requests-and-responses.md).
fn authenticate(
    shared: &Shared,
    req: &Req,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<Claims, Resp> {
    let Some(Ok(tok)) = bearer(&req.headers) else {
        return Err(challenge(
            tenant,
            "AKV10000",
            "Request is missing a Bearer or PoP token.",
        ));
    };
    check_api_version(req)?;
    verify(&shared.key, &tok, &[VAULT_AUD], tenant, now).map_err(|e| token_refusal(tenant, e))
}

fn check_api_version(req: &Req) -> Result<(), Resp> {
    match req.q("api-version") {
        None => Err(error(
            400,
            "BadParameter",
            "The 'api-version' query parameter is missing.",
        )),
        Some(v) if !api_version_ok(v) => Err(error(
            400,
            "BadParameter",
            &format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version (2025-07-01)."
            ),
        )),
        _ => Ok(()),
    }
}

/// The 401 challenge for a token Key Vault does not accept, with its AKV code.
fn token_refusal(tenant: Uuid, e: TokenError) -> Resp {
    match e {
        TokenError::Expired { .. } | TokenError::NotYetValid => challenge(
            tenant,
            "AKV10022",
            "Invalid token: the token is expired or not yet valid.",
        ),
        TokenError::WrongAudience(a) => challenge(
            tenant,
            "AKV10022",
            &format!("Invalid audience. Expected https://vault.azure.net, found: {a}."),
        ),
        TokenError::WrongTenant => challenge(
            tenant,
            "AKV10032",
            "Invalid issuer. Expected one of https://sts.windows.net/{tenant}/, found another tenant.",
        ),
        _ => challenge(
            tenant,
            "AKV10000",
            "Request is missing a Bearer or PoP token (the token is not valid).",
        ),
    }
}

fn forbidden(st: &Tenant, v: &Vault, c: &Claims, action: &str, name: Option<&str>) -> Resp {
    forbidden_in(st, v, c, action, name.map(|n| ("secrets", n)))
}

/// Key Vault's RBAC refusal for `action` on the vault or on `(collection, name)` in it.
pub(crate) fn forbidden_in(
    st: &Tenant,
    v: &Vault,
    c: &Claims,
    action: &str,
    item: Option<(&str, &str)>,
) -> Resp {
    let res = match item {
        Some((coll, n)) => format!("{}/{coll}/{}", st.vault_scope(v), n).to_lowercase(),
        None => st.vault_scope(v).to_lowercase(),
    };
    let msg = format!(
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={};oid={};iss=https://sts.windows.net/{}/\r\nAction: '{}'\r\nResource: '{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: {};location=westeurope\r\n",
        c.appid, c.oid, c.tid, action, res, v.name
    );
    error_inner(403, "Forbidden", &msg, "ForbiddenByRbac")
}

fn check(st: &Tenant, v: &Vault, c: &Claims, action: &str, name: Option<&str>) -> Result<(), Resp> {
    let res = match name {
        Some(n) => format!("{}/secrets/{}", st.vault_scope(v), n),
        None => st.vault_scope(v),
    };
    if st.authorized(c.oid, &res, action, true) {
        Ok(())
    } else {
        Err(forbidden(st, v, c, action, name))
    }
}

pub(crate) fn base(vault: &Vault) -> String {
    format!(
        "https://{}.vault.azure.net",
        vault.name.to_ascii_lowercase()
    )
}

fn attributes(sv: &SecretVersion) -> Value {
    let mut a = json!({
        "enabled": sv.enabled, "created": sv.created, "updated": sv.updated,
        "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": RECOVERABLE_DAYS,
    });
    if let Some(n) = sv.nbf {
        a["nbf"] = json!(n);
    }
    if let Some(e) = sv.exp {
        a["exp"] = json!(e);
    }
    a
}

fn bundle(vault: &Vault, e: &SecretEntry, sv: &SecretVersion, with_value: bool) -> Value {
    let mut b = json!({
        "id": format!("{}/secrets/{}/{}", base(vault), e.name, sv.version),
        "attributes": attributes(sv),
        "tags": sv.tags,
    });
    if with_value {
        b["value"] = json!(sv.value);
    }
    if let Some(ct) = &sv.content_type {
        b["contentType"] = json!(ct);
    }
    b
}

fn deleted_not_found(name: &str) -> Resp {
    error(
        404,
        "SecretNotFound",
        &format!("Deleted Secret not found: {name}"),
    )
}

fn not_found(name: &str) -> Resp {
    error(
        404,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn disabled() -> Resp {
    error_inner(
        403,
        "Forbidden",
        "Operation get is not allowed on a disabled secret.",
        "SecretDisabled",
    )
}

fn max_results(req: &Req) -> Result<usize, Resp> {
    match req.q("maxresults") {
        None => Ok(25),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=25).contains(&n) => Ok(n),
            _ => Err(error(
                400,
                "BadParameter",
                &format!("Invalid value '{s}' for maxresults: it must be between 1 and 25."),
            )),
        },
    }
}

fn skip(req: &Req) -> Result<usize, Resp> {
    match req.q("$skiptoken") {
        None => Ok(0),
        Some(t) => b64url_decode(t)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| error(400, "BadParameter", "The $skiptoken is not valid.")),
    }
}

pub(crate) fn page(req: &Req, vault: &Vault, items: Vec<Value>) -> Resp {
    let (max, sk) = match (max_results(req), skip(req)) {
        (Ok(m), Ok(s)) => (m, s),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(sk).take(max).collect();
    let next = if sk + max < total {
        let api = req.q("api-version").unwrap_or("2025-07-01");
        Value::String(format!(
            "{}:443{}?api-version={}&$skiptoken={}&maxresults={}",
            base(vault),
            req.path.trim_end_matches('/'),
            api,
            b64url((sk + max).to_string().as_bytes()),
            max
        ))
    } else {
        Value::Null
    };
    Resp::json(200, &json!({"value": value, "nextLink": next}))
}

fn deleted_bundle(vault: &Vault, d: &DeletedSecret, full: bool) -> Value {
    let latest = d.entry.versions.last();
    let mut b = match latest {
        Some(sv) if full => bundle(vault, &d.entry, sv, false),
        Some(sv) => {
            json!({"id": format!("{}/secrets/{}", base(vault), d.entry.name), "attributes": attributes(sv), "tags": sv.tags})
        }
        None => json!({"id": format!("{}/secrets/{}", base(vault), d.entry.name)}),
    };
    b["recoveryId"] = json!(format!("{}/deletedsecrets/{}", base(vault), d.entry.name));
    b["deletedDate"] = json!(d.deleted_date);
    b["scheduledPurgeDate"] = json!(d.scheduled_purge);
    b
}

/// Moves a secret to the deleted (recoverable) state, as `DELETE /secrets/{name}` does on a
/// vault with soft delete (every vault since 2025). `None` when no such secret exists.
pub(crate) fn soft_delete<'v>(
    vault: &'v mut Vault,
    name: &str,
    now: DateTime<Utc>,
) -> Option<&'v DeletedSecret> {
    let key = name.to_ascii_lowercase();
    let entry = vault.secrets.remove(&key)?;
    let t = now.timestamp();
    let d = DeletedSecret {
        entry,
        deleted_date: t,
        scheduled_purge: t + RECOVERABLE_DAYS * 86400,
    };
    vault.deleted.insert(key.clone(), d);
    vault.deleted.get(&key)
}

pub(crate) fn body_obj(req: &Req) -> Result<Map<String, Value>, Resp> {
    match req.json_body() {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(error(
            400,
            "BadParameter",
            "The request body must be a JSON object.",
        )),
        Err(m) => Err(error(400, "BadParameter", &m)),
    }
}

pub(crate) fn tags_of(
    v: Option<&Value>,
) -> Result<Option<std::collections::BTreeMap<String, String>>, Resp> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    _ => {
                        return Err(error(
                            400,
                            "BadParameter",
                            &format!("Tag '{k}' must have a string value."),
                        ));
                    }
                }
            }
            check_tag_limits(&out)?;
            Ok(Some(out))
        }
        Some(_) => Err(error(
            400,
            "BadParameter",
            "tags must be an object of strings.",
        )),
    }
}

/// Tags per secret (*About Azure Key Vault secrets*, "Secret tags": "Key Vault supports up to
/// 15 tags, each of which can have a 512-character name and a 512-character value";
/// learn.microsoft.com/azure/key-vault/secrets/about-secrets#secret-tags).
pub const MAX_TAGS: usize = 15;
/// Characters per tag name and per tag value (same page; it said 256 before 2024).
pub const MAX_TAG_CHARS: usize = 512;

/// Key Vault's answer to a tag set over its limits: 400 `BadParameter` "Property has invalid
/// value" (a 16th tag on setSecret, as reported in hashicorp/terraform-provider-azurerm#16780
/// and #16947, and on certificates in aztfmod/terraform-azurerm-caf#821:
/// `Status=400 Code="BadParameter" Message="Property has invalid value\r\n"`). Names and
/// values over the documented length are assumed to get the same answer.
fn check_tag_limits(tags: &std::collections::BTreeMap<String, String>) -> Result<(), Resp> {
    let too_long = tags
        .iter()
        .any(|(k, v)| k.chars().count() > MAX_TAG_CHARS || v.chars().count() > MAX_TAG_CHARS);
    if tags.len() > MAX_TAGS || too_long {
        return Err(error(400, "BadParameter", "Property has invalid value\r\n"));
    }
    Ok(())
}

/// Applies `attributes` (enabled, nbf, exp) from a request body.
fn apply_attributes(sv: &mut SecretVersion, a: Option<&Value>) -> Result<(), Resp> {
    let Some(a) = a else { return Ok(()) };
    if a.is_null() {
        return Ok(());
    }
    let Some(a) = a.as_object() else {
        return Err(error(400, "BadParameter", "attributes must be an object."));
    };
    if let Some(e) = a.get("enabled")
        && !e.is_null()
    {
        sv.enabled = e
            .as_bool()
            .ok_or_else(|| error(400, "BadParameter", "attributes.enabled must be a boolean."))?;
    }
    for (k, slot) in [("nbf", &mut sv.nbf), ("exp", &mut sv.exp)] {
        if let Some(v) = a.get(k) {
            *slot = match v {
                Value::Null => None,
                v => Some(v.as_i64().ok_or_else(|| {
                    error(
                        400,
                        "BadParameter",
                        &format!("attributes.{k} must be integer Unix seconds."),
                    )
                })?),
            };
        }
    }
    Ok(())
}

fn validate_name(n: &str) -> Result<(), Resp> {
    if valid_secret_name(n) {
        Ok(())
    } else {
        Err(error(
            400,
            "BadParameter",
            &format!(
                "The request URI contains an invalid name: {n}. Secret names must match ^[0-9a-zA-Z-]{{1,127}}$."
            ),
        ))
    }
}

/// What a handler answers: `Err` is a refusal, so the checks read as a sequence of `?`.
type Answer = Result<Resp, Resp>;

/// One authenticated request against one vault: what every secret operation needs.
struct VaultCall<'a> {
    req: &'a Req,
    vname: &'a str,
    /// The vault's identity only (what scopes, ids and pages are built from): cloning its
    /// secrets on every request made the emulator, not the rotator, the bottleneck of the
    /// 1,000-credential benchmark. Handlers read the secrets through `stored`.
    meta: Vault,
    c: &'a Claims,
    now: DateTime<Utc>,
}

impl VaultCall<'_> {
    /// The RBAC check for the data action `{ACTION}/{op}` on the vault or one secret.
    fn check(&self, st: &Tenant, op: &str, name: Option<&str>) -> Result<(), Resp> {
        check(st, &self.meta, self.c, &format!("{ACTION}/{op}"), name)
    }
}

/// The vault as stored, secrets included.
fn stored<'a>(st: &'a Tenant, vname: &str) -> Result<&'a Vault, Resp> {
    st.vaults
        .get(vname)
        .ok_or_else(|| error(404, "VaultNotFound", "vault vanished"))
}

/// A live secret by name (names are case-insensitive).
fn stored_secret<'a>(st: &'a Tenant, vname: &str, n: &str) -> Result<&'a SecretEntry, Resp> {
    stored(st, vname)?
        .secrets
        .get(&n.to_ascii_lowercase())
        .ok_or_else(|| not_found(n))
}

fn version_not_found(n: &str, ver: &str) -> Resp {
    error(
        404,
        "SecretNotFound",
        &format!("A secret with (name/id) {n}/{ver} was not found in this key vault."),
    )
}

/// The route table: one handler per secrets operation of
/// `specification/keyvault/data-plane/Microsoft.KeyVault/stable/2025-07-01/secrets.json`.
fn handle_route(
    st: &mut Tenant,
    req: &Req,
    vname: &str,
    route: Route,
    c: &Claims,
    now: DateTime<Utc>,
) -> Resp {
    let meta = match st.vaults.get(vname) {
        Some(v) => Vault {
            name: v.name.clone(),
            resource_group: v.resource_group.clone(),
            secrets: Default::default(),
            deleted: Default::default(),
            certificates: Default::default(),
            keys: Default::default(),
        },
        None => return error(404, "VaultNotFound", "vault vanished"),
    };
    let k = VaultCall {
        req,
        vname,
        meta,
        c,
        now,
    };
    let answer = match route {
        Route::Unknown => Err(unknown_operation(req)),
        Route::List => list_secrets(st, &k),
        Route::Versions(n) => list_versions(st, &k, &n),
        Route::GetLatest(n) | Route::GetVersion(n, _) if !valid_secret_name(&n) => {
            Err(validate_name(&n).unwrap_err())
        }
        Route::GetLatest(n) => get_secret(st, &k, &n, None),
        Route::GetVersion(n, ver) => get_secret(st, &k, &n, Some(&ver)),
        Route::Set(n) => set_secret(st, &k, &n),
        Route::Update(n, ver) => update_secret(st, &k, &n, ver.as_deref()),
        Route::Delete(n) => delete_secret(st, &k, &n),
        Route::ListDeleted => list_deleted(st, &k),
        Route::GetDeleted(n) => get_deleted(st, &k, &n),
        Route::Recover(n) => recover_deleted(st, &k, &n),
        Route::Purge(n) => purge_deleted(st, &k, &n),
    };
    answer.unwrap_or_else(|refusal| refusal)
}

fn unknown_operation(req: &Req) -> Resp {
    error(
        400,
        "BadParameter",
        &format!(
            "Unknown operation: {} {}. The emulator serves /secrets and /deletedsecrets.",
            req.method, req.path
        ),
    )
}

/// `GET /secrets` (secrets.json `GetSecrets`): each secret's latest version, without values.
fn list_secrets(st: &Tenant, k: &VaultCall) -> Answer {
    k.check(st, "readMetadata/action", None)?;
    let v = &k.meta;
    let items = stored(st, k.vname)?.secrets.values().filter_map(|e| e.versions.last().map(|sv| {
        let mut b = json!({"id": format!("{}/secrets/{}", base(v), e.name), "attributes": attributes(sv), "tags": sv.tags});
        if let Some(ct) = &sv.content_type { b["contentType"] = json!(ct); }
        b
    })).collect();
    Ok(page(k.req, v, items))
}

/// `GET /secrets/{name}/versions` (secrets.json `GetSecretVersions`).
fn list_versions(st: &Tenant, k: &VaultCall, n: &str) -> Answer {
    validate_name(n)?;
    k.check(st, "readMetadata/action", Some(n))?;
    let e = stored_secret(st, k.vname, n)?;
    let items = e
        .versions
        .iter()
        .map(|sv| bundle(&k.meta, e, sv, false))
        .collect();
    Ok(page(k.req, &k.meta, items))
}

/// `GET /secrets/{name}[/{version}]` (secrets.json `GetSecret`): the latest version when none
/// is named; a disabled version is refused.
fn get_secret(st: &Tenant, k: &VaultCall, n: &str, ver: Option<&str>) -> Answer {
    k.check(st, "getSecret/action", Some(n))?;
    let e = stored_secret(st, k.vname, n)?;
    let sv = match ver {
        None => e.versions.last().ok_or_else(|| not_found(n))?,
        Some(ver) => e
            .versions
            .iter()
            .find(|x| x.version.eq_ignore_ascii_case(ver))
            .ok_or_else(|| version_not_found(n, ver))?,
    };
    if !sv.enabled {
        return Err(disabled());
    }
    Ok(Resp::json(200, &bundle(&k.meta, e, sv, true)))
}

/// The new version a setSecret body describes: `value` (at most 25 KB), `contentType`,
/// `tags`, `attributes`.
fn new_version(b: &Map<String, Value>, now: DateTime<Utc>) -> Result<SecretVersion, Resp> {
    let value = match b.get("value") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(error(
                400,
                "BadParameter",
                "The request body must contain 'value' as a string.",
            ));
        }
    };
    if value.len() > 25 * 1024 {
        return Err(error(
            400,
            "BadParameter",
            "The secret value exceeds the 25 KB limit.",
        ));
    }
    let content_type = match b.get("contentType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(error(400, "BadParameter", "contentType must be a string."));
        }
    };
    let t = now.timestamp();
    let mut sv = SecretVersion {
        version: hex32(),
        value,
        content_type,
        tags: tags_of(b.get("tags"))?.unwrap_or_default(),
        enabled: true,
        nbf: None,
        exp: None,
        created: t,
        updated: t,
    };
    apply_attributes(&mut sv, b.get("attributes"))?;
    Ok(sv)
}

/// `PUT /secrets/{name}` (secrets.json `SetSecret`): a new version, created with the secret
/// when the name is new.
fn set_secret(st: &mut Tenant, k: &VaultCall, n: &str) -> Answer {
    validate_name(n)?;
    k.check(st, "setSecret/action", Some(n))?;
    let key = n.to_ascii_lowercase();
    // A soft-deleted name cannot be reused: 409 Conflict, inner code
    // ObjectIsDeletedButRecoverable (external-secrets/external-secrets#3519; the
    // message as in microsoft/AzureKeyVaultExplorer#42 and Azure/sap-hana#938).
    if stored(st, k.vname)?.deleted.contains_key(&key) {
        return Err(error_inner(
            409,
            "Conflict",
            &format!(
                "Secret {n} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."
            ),
            "ObjectIsDeletedButRecoverable",
        ));
    }
    let b = body_obj(k.req)?;
    let sv = new_version(&b, k.now)?;
    let vault = st.vaults.get_mut(k.vname).ok_or_else(|| not_found(n))?;
    let entry = vault.secrets.entry(key).or_insert_with(|| SecretEntry {
        name: n.to_string(),
        versions: vec![],
    });
    entry.versions.push(sv.clone());
    let out = bundle(&k.meta, entry, &sv, true);
    Ok(Resp::json(200, &out))
}

/// An updateSecret body's `contentType`: absent (keep), null (clear) or a string.
fn content_type_update(b: &Map<String, Value>) -> Result<Option<Option<String>>, Resp> {
    match b.get("contentType") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(error(400, "BadParameter", "contentType must be a string.")),
    }
}

/// `PATCH /secrets/{name}[/{version}]` (secrets.json `UpdateSecret`): attributes, tags and
/// content type of one version; the value never changes.
fn update_secret(st: &mut Tenant, k: &VaultCall, n: &str, ver: Option<&str>) -> Answer {
    validate_name(n)?;
    k.check(st, "update/action", Some(n))?;
    let b = body_obj(k.req)?;
    let tags = tags_of(b.get("tags"))?;
    let ct = content_type_update(&b)?;
    let vault = st.vaults.get_mut(k.vname).ok_or_else(|| not_found(n))?;
    let e = vault
        .secrets
        .get_mut(&n.to_ascii_lowercase())
        .ok_or_else(|| not_found(n))?;
    let idx = match ver {
        None => e.versions.len().checked_sub(1),
        Some(ver) => e
            .versions
            .iter()
            .position(|x| x.version.eq_ignore_ascii_case(ver)),
    }
    .ok_or_else(|| version_not_found(n, ver.unwrap_or_default()))?;
    let mut sv = e.versions[idx].clone();
    apply_attributes(&mut sv, b.get("attributes"))?;
    if let Some(t) = tags {
        sv.tags = t;
    }
    if let Some(ct) = ct {
        sv.content_type = ct;
    }
    sv.updated = k.now.timestamp();
    e.versions[idx] = sv.clone();
    Ok(Resp::json(200, &bundle(&k.meta, e, &sv, false)))
}

/// `DELETE /secrets/{name}` (secrets.json `DeleteSecret`): soft delete.
fn delete_secret(st: &mut Tenant, k: &VaultCall, n: &str) -> Answer {
    validate_name(n)?;
    k.check(st, "delete", Some(n))?;
    let vault = st.vaults.get_mut(k.vname).ok_or_else(|| not_found(n))?;
    let d = soft_delete(vault, n, k.now).ok_or_else(|| not_found(n))?;
    Ok(Resp::json(200, &deleted_bundle(&k.meta, d, true)))
}

/// `GET /deletedsecrets` (secrets.json `GetDeletedSecrets`).
fn list_deleted(st: &Tenant, k: &VaultCall) -> Answer {
    k.check(st, "readMetadata/action", None)?;
    let items = stored(st, k.vname)?
        .deleted
        .values()
        .map(|d| deleted_bundle(&k.meta, d, false))
        .collect();
    Ok(page(k.req, &k.meta, items))
}

/// `GET /deletedsecrets/{name}` (secrets.json `GetDeletedSecret`).
fn get_deleted(st: &Tenant, k: &VaultCall, n: &str) -> Answer {
    k.check(st, "readMetadata/action", Some(n))?;
    let d = stored(st, k.vname)?
        .deleted
        .get(&n.to_ascii_lowercase())
        .ok_or_else(|| deleted_not_found(n))?;
    Ok(Resp::json(200, &deleted_bundle(&k.meta, d, true)))
}

/// `POST /deletedsecrets/{name}/recover` (secrets.json `RecoverDeletedSecret`): the secret
/// comes back with all its versions.
fn recover_deleted(st: &mut Tenant, k: &VaultCall, n: &str) -> Answer {
    k.check(st, "recover/action", Some(n))?;
    let vault = st.vaults.get_mut(k.vname).ok_or_else(|| not_found(n))?;
    let d = vault
        .deleted
        .remove(&n.to_ascii_lowercase())
        .ok_or_else(|| deleted_not_found(n))?;
    let out = d
        .entry
        .versions
        .last()
        .map(|sv| bundle(vault, &d.entry, sv, false))
        .unwrap_or(json!({}));
    vault.secrets.insert(n.to_ascii_lowercase(), d.entry);
    Ok(Resp::json(200, &out))
}

/// `DELETE /deletedsecrets/{name}` (secrets.json `PurgeDeletedSecret`).
fn purge_deleted(st: &mut Tenant, k: &VaultCall, n: &str) -> Answer {
    k.check(st, "purge/action", Some(n))?;
    let vault = st.vaults.get_mut(k.vname).ok_or_else(|| not_found(n))?;
    vault
        .deleted
        .remove(&n.to_ascii_lowercase())
        .ok_or_else(|| deleted_not_found(n))?;
    Ok(Resp::empty(204))
}

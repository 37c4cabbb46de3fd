//! Microsoft Graph v1.0 (`graph.microsoft.com`): applications (list with $select/$filter/$top
//! and paging, get by object id or `applications(appId='...')`), addPassword, removePassword,
//! owners, `owners/$ref`, `servicePrincipals/{id}/ownedObjects`, and the service principal list
//! (`GET servicePrincipals`, with each SP's own credentials: SAML signing certificates).
//!
//! Authorization follows the app roles in the token: `Application.ReadWrite.All` (and
//! `Directory.ReadWrite.All`) reach every app, `Application.Read.All`/`Directory.Read.All` read
//! every app, `Application.ReadWrite.OwnedBy` reaches only apps the caller owns. Writes count
//! against the per-app write quota (429 + Retry-After when exceeded).

use axum::http::Method;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::entra::GRAPH_AUD;
use crate::jwt::{Claims, TokenError, bearer, verify};
use crate::model::{App, Password, Tenant};
use crate::server::{Req, Resp, Shared};
use crate::util::{b64url, b64url_decode, enc, iso, lock, secret_text};

pub fn error(status: u16, code: &str, message: &str) -> Resp {
    let id = Uuid::new_v4();
    Resp::json(
        status,
        &json!({"error": {
            "code": code, "message": message,
            "innerError": {"date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(), "request-id": id, "client-request-id": id},
        }}),
    )
}

pub fn throttled_body() -> Resp {
    let id = Uuid::new_v4();
    Resp::json(
        429,
        &json!({"error": {
            "code": "TooManyRequests",
            "message": "Please retry again later.",
            "innerError": {"code": "429", "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "message": "Please retry after", "request-id": id, "status": "429"},
        }}),
    )
}

fn not_found(id: &str) -> Resp {
    error(
        404,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn denied() -> Resp {
    error(
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

#[derive(Debug, Clone)]
enum AppRef {
    ObjectId(String),
    AppId(String),
}

enum SpRef {
    ObjectId(String),
    AppId(String),
}

enum Route {
    List,
    Get(AppRef),
    AddPassword(AppRef),
    RemovePassword(AppRef),
    AddKey(AppRef),
    RemoveKey(AppRef),
    Patch(AppRef),
    Owners(AppRef),
    AddOwner(AppRef),
    OwnedObjects(SpRef, bool),
    ListServicePrincipals,
    Unknown(String),
}

/// `applications(appId='x')` → Some("x").
fn key_segment<'a>(seg: &'a str, entity: &str) -> Option<Result<&'a str, ()>> {
    let rest = seg.strip_prefix(entity)?.strip_prefix('(')?;
    let inner = rest.strip_suffix(')')?;
    let Some(v) = inner.strip_prefix("appId=") else {
        return Some(Err(()));
    };
    Some(
        v.strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .ok_or(()),
    )
}

fn parse(req: &Req) -> Route {
    let path = req.path.trim_matches('/');
    let segs: Vec<&str> = path.split('/').collect();
    if segs.first().is_none_or(|v| *v != "v1.0" && *v != "beta") {
        return Route::Unknown(segs.first().copied().unwrap_or("").to_string());
    }
    let segs = &segs[1..];
    let m = &req.method;
    // Normalise the key-as-segment forms.
    let (app, rest): (Option<AppRef>, &[&str]) = match segs {
        ["applications", id, rest @ ..] => (Some(AppRef::ObjectId(id.to_string())), rest),
        [first, rest @ ..] => match key_segment(first, "applications") {
            Some(Ok(v)) => (Some(AppRef::AppId(v.to_string())), rest),
            Some(Err(())) => return Route::Unknown(first.to_string()),
            None => (None, segs),
        },
        [] => (None, segs),
    };
    if let Some(a) = app {
        return match (m, rest) {
            (&Method::GET, []) => Route::Get(a),
            (&Method::POST, ["addPassword"]) | (&Method::POST, ["microsoft.graph.addPassword"]) => {
                Route::AddPassword(a)
            }
            (&Method::POST, ["removePassword"])
            | (&Method::POST, ["microsoft.graph.removePassword"]) => Route::RemovePassword(a),
            (&Method::POST, ["addKey"]) | (&Method::POST, ["microsoft.graph.addKey"]) => {
                Route::AddKey(a)
            }
            (&Method::POST, ["removeKey"]) | (&Method::POST, ["microsoft.graph.removeKey"]) => {
                Route::RemoveKey(a)
            }
            (&Method::PATCH, []) => Route::Patch(a),
            (&Method::GET, ["owners"]) => Route::Owners(a),
            (&Method::POST, ["owners", "$ref"]) => Route::AddOwner(a),
            (_, [seg, ..]) => Route::Unknown(seg.to_string()),
            (_, []) => Route::Unknown("applications".into()),
        };
    }
    match (m, segs) {
        (&Method::GET, ["applications"]) => Route::List,
        (&Method::GET, ["servicePrincipals"]) => Route::ListServicePrincipals,
        (&Method::GET, [first, "ownedObjects", cast @ ..]) if cast.len() <= 1 => {
            // A cast segment may omit the `microsoft.` namespace alias (kiota sends `graph.…`).
            let only_apps = match cast {
                [] => false,
                [c] if c.eq_ignore_ascii_case("microsoft.graph.application")
                    || c.eq_ignore_ascii_case("graph.application") =>
                {
                    true
                }
                [c, ..] => return Route::Unknown(c.to_string()),
            };
            if *first == "servicePrincipals" {
                return Route::Unknown("ownedObjects".into());
            }
            match key_segment(first, "servicePrincipals") {
                Some(Ok(v)) => Route::OwnedObjects(SpRef::AppId(v.to_string()), only_apps),
                _ => Route::Unknown(first.to_string()),
            }
        }
        (&Method::GET, ["servicePrincipals", id, "ownedObjects", cast @ ..]) if cast.len() <= 1 => {
            let only_apps = match cast {
                [] => false,
                [c] if c.eq_ignore_ascii_case("microsoft.graph.application")
                    || c.eq_ignore_ascii_case("graph.application") =>
                {
                    true
                }
                [c, ..] => return Route::Unknown(c.to_string()),
            };
            Route::OwnedObjects(SpRef::ObjectId(id.to_string()), only_apps)
        }
        (_, [first, ..]) => Route::Unknown(first.to_string()),
        (_, []) => Route::Unknown("v1.0".into()),
    }
}

pub fn classify(req: &Req) -> Option<&'static str> {
    Some(match parse(req) {
        Route::List => "listApplications",
        Route::Get(_) => "getApplication",
        Route::AddPassword(_) => "addPassword",
        Route::RemovePassword(_) => "removePassword",
        Route::AddKey(_) => "addKey",
        Route::RemoveKey(_) => "removeKey",
        Route::Patch(_) => "updateApplication",
        Route::Owners(_) => "listOwners",
        Route::AddOwner(_) => "addOwner",
        Route::OwnedObjects(..) => "listOwnedObjects",
        Route::ListServicePrincipals => "listServicePrincipals",
        Route::Unknown(_) => return None,
    })
}

fn authenticate(
    shared: &Shared,
    req: &Req,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<Claims, Resp> {
    let tok = match bearer(&req.headers) {
        None => {
            return Err(error(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
            ));
        }
        Some(Err(_)) => {
            return Err(error(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).",
            ));
        }
        Some(Ok(t)) => t,
    };
    verify(
        &shared.key,
        &tok,
        &[GRAPH_AUD, "00000003-0000-0000-c000-000000000000"],
        tenant,
        now,
    )
    .map_err(|e| match e {
        TokenError::Expired { .. } | TokenError::NotYetValid => error(
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        ),
        TokenError::WrongAudience(_) => {
            error(401, "InvalidAuthenticationToken", "Invalid audience.")
        }
        TokenError::WrongTenant => error(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        ),
        _ => error(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure.",
        ),
    })
}

#[derive(PartialEq, Clone, Copy)]
enum Need {
    Read,
    Write,
}

/// Can the caller read / write this app?
fn allowed(c: &Claims, app: &App, need: Need) -> bool {
    let has = |r: &str| c.roles.iter().any(|x| x.eq_ignore_ascii_case(r));
    if has("Application.ReadWrite.All") || has("Directory.ReadWrite.All") {
        return true;
    }
    if need == Need::Read && (has("Application.Read.All") || has("Directory.Read.All")) {
        return true;
    }
    has("Application.ReadWrite.OwnedBy") && app.owners.contains(&c.oid)
}

fn has_any_app_role(c: &Claims) -> bool {
    [
        "Application.ReadWrite.All",
        "Directory.ReadWrite.All",
        "Application.Read.All",
        "Directory.Read.All",
        "Application.ReadWrite.OwnedBy",
    ]
    .iter()
    .any(|r| c.roles.iter().any(|x| x.eq_ignore_ascii_case(r)))
}

fn find_app(st: &Tenant, r: &AppRef) -> Option<usize> {
    match r {
        AppRef::ObjectId(id) => Uuid::parse_str(id)
            .ok()
            .and_then(|u| st.apps.iter().position(|a| a.object_id == u)),
        AppRef::AppId(id) => Uuid::parse_str(id)
            .ok()
            .and_then(|u| st.apps.iter().position(|a| a.app_id == u)),
    }
}

fn app_ref_text(r: &AppRef) -> &str {
    match r {
        AppRef::ObjectId(s) | AppRef::AppId(s) => s,
    }
}

fn password_json(p: &Password, secret: Option<&str>) -> Value {
    json!({
        "customKeyIdentifier": null,
        "displayName": p.display_name,
        "endDateTime": iso(p.end),
        "hint": p.hint,
        "keyId": p.key_id,
        "secretText": secret,
        "startDateTime": iso(p.start),
    })
}

/// A read's view of an application: with uncertainty `graphReadLagSeconds`, passwords added
/// less than that long ago are not visible yet (Entra, "Designing for eventual consistency").
fn visible(a: &App, now: DateTime<Utc>, lag_seconds: u64) -> App {
    let mut a = a.clone();
    a.passwords
        .retain(|p| p.added_at + Duration::seconds(lag_seconds as i64) <= now);
    a
}

/// The tenant app management policy's password restrictions, unless the caller is one of its
/// `excludeActors` (Graph docs "tenantAppManagementPolicy", "passwordCredentialConfiguration").
/// The error codes are the ones Graph uses for app-policy refusals
/// (`CredentialInvalidLifetimeAsPerAppPolicy` is quoted in the docs; the addition refusal's
/// code follows it: a decision).
fn tenant_policy_allows(st: &Tenant, c: &Claims, lifetime: Duration) -> Result<(), Resp> {
    let Some((id, p, exempt)) = &st.app_policy else {
        return Ok(());
    };
    if exempt.contains(&c.oid) {
        return Ok(());
    }
    if p.block_password_addition {
        return Err(error(
            400,
            "CredentialTypeNotAllowedAsPerAppPolicy",
            &format!("Password addition is not allowed as per assigned policy '{id}'."),
        ));
    }
    match p.max_password_lifetime_days {
        Some(days) if lifetime > Duration::days(days as i64) => Err(error(
            400,
            "CredentialInvalidLifetimeAsPerAppPolicy",
            &format!(
                "Credential lifetime exceeds the max value allowed as per assigned policy '{id}'."
            ),
        )),
        _ => Ok(()),
    }
}

/// Apps whose audience includes personal Microsoft accounts take at most two passwords
/// (Entra docs "Validation differences by supported account types"; the error text is a
/// decision).
fn personal_account_cap(a: &App) -> Result<(), Resp> {
    let personal = matches!(
        a.sign_in_audience.as_str(),
        "AzureADandPersonalMicrosoftAccount" | "PersonalMicrosoftAccount"
    );
    if personal && a.passwords.len() >= 2 {
        return Err(error(
            400,
            "TooManyPasswordCredentials",
            "The application allows personal Microsoft accounts and already has the maximum of 2 password credentials.",
        ));
    }
    Ok(())
}

fn app_json(a: &App) -> Map<String, Value> {
    let v = json!({
        "id": a.object_id,
        "appId": a.app_id,
        "displayName": a.display_name,
        "createdDateTime": iso(a.created),
        "signInAudience": a.sign_in_audience,
        "passwordCredentials": a.passwords.iter().map(|p| password_json(p, None)).collect::<Vec<_>>(),
        "keyCredentials": a.certificates.iter().map(|k| crate::keycreds::key_json(k, false)).collect::<Vec<_>>(),
        "tags": [],
        "uniqueName": null,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn select(m: Map<String, Value>, sel: &Option<Vec<String>>) -> Value {
    match sel {
        None => Value::Object(m),
        Some(keys) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| keys.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .collect(),
        ),
    }
}

/// The properties an application answers with (Graph docs "application resource type").
const APP_PROPERTIES: [&str; 9] = [
    "id",
    "appId",
    "displayName",
    "createdDateTime",
    "signInAudience",
    "passwordCredentials",
    "keyCredentials",
    "tags",
    "uniqueName",
];

fn parse_select(req: &Req) -> Result<Option<Vec<String>>, Resp> {
    parse_select_of(req, &APP_PROPERTIES, "microsoft.graph.application")
}

/// `$select` against the properties `known` of `entity`: an unknown one is 400, as in Graph.
fn parse_select_of(req: &Req, known: &[&str], entity: &str) -> Result<Option<Vec<String>>, Resp> {
    let Some(s) = req.q("$select") else {
        return Ok(None);
    };
    let mut out = vec![];
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !known.iter().any(|k| k.eq_ignore_ascii_case(p)) {
            return Err(error(
                400,
                "Request_BadRequest",
                &format!("Could not find a property named '{p}' on type '{entity}'."),
            ));
        }
        out.push(p.to_string());
    }
    Ok(Some(out))
}

enum Filter {
    AppId(String),
    DisplayName(String),
    StartsWith(String),
}

fn parse_filter(f: &str) -> Result<Filter, Resp> {
    let f = f.trim();
    let quoted = |s: &str| -> Option<String> {
        let s = s.trim();
        s.strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .map(|s| s.replace("''", "'"))
    };
    if let Some((lhs, rhs)) = f.split_once(" eq ") {
        let v = quoted(rhs).ok_or_else(|| {
            error(
                400,
                "BadRequest",
                &format!("Invalid filter clause: the value in '{f}' must be a quoted string."),
            )
        })?;
        return match lhs.trim() {
            l if l.eq_ignore_ascii_case("appId") => Ok(Filter::AppId(v)),
            l if l.eq_ignore_ascii_case("displayName") => Ok(Filter::DisplayName(v)),
            l => Err(error(
                400,
                "Request_UnsupportedQuery",
                &format!(
                    "Unsupported or invalid query filter clause specified for property '{l}' of resource 'Application'."
                ),
            )),
        };
    }
    if let Some(inner) = f
        .strip_prefix("startswith(")
        .or_else(|| f.strip_prefix("startsWith("))
        .and_then(|s| s.strip_suffix(')'))
        && let Some((prop, v)) = inner.split_once(',')
        && prop.trim().eq_ignore_ascii_case("displayName")
        && let Some(v) = quoted(v)
    {
        return Ok(Filter::StartsWith(v));
    }
    Err(error(
        400,
        "Request_UnsupportedQuery",
        &format!(
            "Unsupported Query. The emulator supports $filter=appId eq '...', displayName eq '...' and startswith(displayName,'...'); got '{f}'."
        ),
    ))
}

fn paging(req: &Req) -> Result<(usize, usize), Resp> {
    let top = match req.q("$top") {
        None => 100,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=999).contains(&n) => n,
            _ => {
                return Err(error(
                    400,
                    "Request_BadRequest",
                    &format!(
                        "Invalid page size specified: '{t}'. Must be between 1 and 999 inclusive."
                    ),
                ));
            }
        },
    };
    let skip = match req.q("$skiptoken") {
        None => 0,
        Some(t) => b64url_decode(t)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("skip:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| error(400, "Request_BadRequest", "Invalid $skiptoken."))?,
    };
    Ok((top, skip))
}

fn next_link(req: &Req, skip: usize) -> String {
    let mut q: Vec<String> = req
        .query
        .iter()
        .filter(|(k, _)| k != "$skiptoken")
        .map(|(k, v)| format!("{}={}", k, enc(v)))
        .collect();
    q.push(format!(
        "$skiptoken={}",
        b64url(format!("skip:{skip}").as_bytes())
    ));
    format!("https://graph.microsoft.com{}?{}", req.path, q.join("&"))
}

fn context(sel: &Option<Vec<String>>, entity: bool) -> String {
    let s = sel
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    format!(
        "https://graph.microsoft.com/v1.0/$metadata#applications{s}{}",
        if entity { "/$entity" } else { "" }
    )
}

/// Counts a Graph write for the caller's app; Err(retry-after seconds) when over the quota.
fn count_write(st: &mut Tenant, appid: Uuid, now: DateTime<Utc>) -> Result<(), i64> {
    let q = st.graph_quota;
    let window = Duration::seconds(q.window_seconds as i64);
    let entry = st.graph_writes.entry(appid).or_default();
    while entry.front().is_some_and(|t| *t + window <= now) {
        entry.pop_front();
    }
    if entry.len() as u32 >= q.requests {
        let oldest = entry.front().copied().unwrap_or(now);
        // Round up: a client that waits exactly Retry-After must find room (conformance found
        // the truncated value throttled it again).
        let wait = oldest + window - now;
        let secs = wait.num_seconds() + i64::from(wait.subsec_nanos() > 0);
        return Err(secs.max(1));
    }
    entry.push_back(now);
    Ok(())
}

pub fn handle(shared: &Shared, req: &Req, _op: Option<&'static str>) -> Resp {
    let now = shared.now();
    let route = parse(req);
    if let Route::Unknown(seg) = &route {
        return unknown_segment(seg);
    }
    let mut st = lock(&shared.state);
    let claims = match authenticate(shared, req, st.tenant_id, now) {
        Ok(c) => c,
        Err(r) => return r,
    };
    handle_route(&mut st, req, route, &claims, now)
}

/// What a handler answers: `Err` is a refusal, so the checks read as a sequence of `?`.
type Answer = Result<Resp, Resp>;

/// The roles that read every application in the directory (OwnedBy is not one of them).
fn reads_all_apps(c: &Claims) -> bool {
    [
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ]
    .iter()
    .any(|r| c.roles.iter().any(|x| x.eq_ignore_ascii_case(r)))
}

/// The properties a service principal answers with (Graph docs "servicePrincipal resource type").
const SP_PROPERTIES: [&str; 6] = [
    "id",
    "appId",
    "displayName",
    "servicePrincipalType",
    "passwordCredentials",
    "keyCredentials",
];

/// A service principal's SAML signing certificate as Graph lists it: only the public metadata.
fn sp_certificate_json(k: &crate::model::Certificate) -> Value {
    json!({
        "customKeyIdentifier": null, "displayName": k.display_name, "endDateTime": iso(k.end),
        "key": null, "keyId": k.key_id, "startDateTime": iso(k.start),
        "type": "AsymmetricX509Cert", "usage": "Verify",
    })
}

/// Every service principal in the tenant: the applications' first, then the managed identities'.
fn service_principals_json(st: &Tenant) -> Vec<Map<String, Value>> {
    st.apps
        .iter()
        .map(|a| {
            json!({
                "id": a.sp_id, "appId": a.app_id, "displayName": a.display_name,
                "servicePrincipalType": "Application", "passwordCredentials": [],
                "keyCredentials": a.sp_certificates.iter().map(sp_certificate_json).collect::<Vec<_>>(),
            })
        })
        .chain(st.mis.iter().map(|m| {
            json!({
                "id": m.principal_id, "appId": m.client_id, "displayName": m.name,
                "servicePrincipalType": "ManagedIdentity", "passwordCredentials": [],
                "keyCredentials": [],
            })
        }))
        .filter_map(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// A collection page: `value` plus an `@odata.nextLink` while items remain after it.
fn collection_page(req: &Req, context: String, page: Vec<Value>, next: Option<usize>) -> Resp {
    let mut body = json!({"@odata.context": context, "value": page});
    if let Some(skip) = next {
        body["@odata.nextLink"] = json!(next_link(req, skip));
    }
    Resp::json(200, &body)
}

/// Where the next page starts, when the current one does not reach the end.
fn next_skip(skip: usize, top: usize, total: usize) -> Option<usize> {
    (skip + top < total).then_some(skip + top)
}

/// Every service principal: one per application, one per managed identity. Listing them needs
/// a role that reads the whole directory's applications (OwnedBy is not enough).
fn list_service_principals(st: &Tenant, req: &Req, c: &Claims) -> Answer {
    if !reads_all_apps(c) {
        return Err(denied());
    }
    let sel = parse_select_of(req, &SP_PROPERTIES, "microsoft.graph.servicePrincipal")?;
    let (top, skip) = paging(req)?;
    let all = service_principals_json(st);
    let total = all.len();
    let page: Vec<Value> = all
        .into_iter()
        .skip(skip)
        .take(top)
        .map(|m| select(m, &sel))
        .collect();
    let context = "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals".to_string();
    Ok(collection_page(
        req,
        context,
        page,
        next_skip(skip, top, total),
    ))
}

/// The route table: one handler per Graph operation.
fn handle_route(st: &mut Tenant, req: &Req, route: Route, c: &Claims, now: DateTime<Utc>) -> Resp {
    let answer = match route {
        Route::ListServicePrincipals => list_service_principals(st, req, c),
        Route::List => list_applications(st, req, c, now),
        Route::Get(r) => get_application(st, req, &r, c, now),
        Route::AddPassword(r) => add_password(st, req, &r, c, now),
        Route::RemovePassword(r) => remove_password(st, req, &r, c, now),
        Route::AddKey(r) => key_route(st, req, KeyOp::Add, &r, c, now),
        Route::RemoveKey(r) => key_route(st, req, KeyOp::Remove, &r, c, now),
        Route::Patch(r) => key_route(st, req, KeyOp::Patch, &r, c, now),
        Route::Owners(r) => list_owners(st, &r, c),
        Route::AddOwner(r) => add_owner(st, req, &r, c, now),
        Route::OwnedObjects(sp, _only_apps) => list_owned_objects(st, req, &sp, c),
        Route::Unknown(seg) => Ok(unknown_segment(&seg)),
    };
    answer.unwrap_or_else(|refusal| refusal)
}

fn unknown_segment(seg: &str) -> Resp {
    error(
        400,
        "BadRequest",
        &format!("Resource not found for the segment '{seg}'."),
    )
}

/// The app a request names. A caller with no application role at all is denied before it
/// learns whether the app exists; otherwise a missing app is 404.
fn locate_app(st: &Tenant, r: &AppRef, c: &Claims) -> Result<usize, Resp> {
    find_app(st, r).ok_or_else(|| {
        if has_any_app_role(c) {
            not_found(app_ref_text(r))
        } else {
            denied()
        }
    })
}

/// The app a request names, when the caller may read / write it.
fn permitted_app(st: &Tenant, r: &AppRef, c: &Claims, need: Need) -> Result<usize, Resp> {
    let i = locate_app(st, r, c)?;
    if !allowed(c, &st.apps[i], need) {
        return Err(denied());
    }
    Ok(i)
}

/// Charges one write to the caller's quota; over it, 429 with Retry-After.
fn charge_write(st: &mut Tenant, appid: Uuid, now: DateTime<Utc>) -> Result<(), Resp> {
    count_write(st, appid, now)
        .map_err(|secs| throttled_body().header("retry-after", secs.to_string()))
}

/// A string property the body must carry.
fn required_text<'b>(body: &'b Value, name: &str) -> Result<&'b str, Resp> {
    body.get(name).and_then(|v| v.as_str()).ok_or_else(|| {
        error(
            400,
            "Request_BadRequest",
            &format!("The request body must contain '{name}'."),
        )
    })
}

fn json_body(req: &Req) -> Result<Value, Resp> {
    req.json_body()
        .map_err(|m| error(400, "Request_BadRequest", &m))
}

impl Filter {
    fn matches(&self, a: &App) -> bool {
        match self {
            Filter::AppId(v) => a.app_id.to_string().eq_ignore_ascii_case(v),
            Filter::DisplayName(v) => &a.display_name == v,
            Filter::StartsWith(v) => a.display_name.to_lowercase().starts_with(&v.to_lowercase()),
        }
    }
}

/// `GET /applications` with `$select`, `$filter`, `$top` and `$skiptoken`
/// (Graph docs "List applications").
fn list_applications(st: &Tenant, req: &Req, c: &Claims, now: DateTime<Utc>) -> Answer {
    if !has_any_app_role(c) {
        return Err(denied());
    }
    let sel = parse_select(req)?;
    let filter = req.q("$filter").map(parse_filter).transpose()?;
    let (top, skip) = paging(req)?;
    // With only OwnedBy, the list shows the apps the caller owns (documented choice).
    let all: Vec<&App> = st
        .apps
        .iter()
        .filter(|a| allowed(c, a, Need::Read))
        .filter(|a| filter.as_ref().is_none_or(|f| f.matches(a)))
        .collect();
    let lag = st.uncertainties.graph_read_lag_seconds;
    let page: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(top)
        .map(|a| select(app_json(&visible(a, now, lag)), &sel))
        .collect();
    let next = next_skip(skip, top, all.len());
    Ok(collection_page(req, context(&sel, false), page, next))
}

/// `GET /applications/{id}` and `GET /applications(appId='…')` (Graph docs "Get application").
fn get_application(st: &Tenant, req: &Req, r: &AppRef, c: &Claims, now: DateTime<Utc>) -> Answer {
    let sel = parse_select(req)?;
    let i = permitted_app(st, r, c, Need::Read)?;
    let lag = st.uncertainties.graph_read_lag_seconds;
    let app = visible(&st.apps[i], now, lag);
    let mut v = select(app_json(&app), &sel);
    if sel.is_some() {
        crate::keycreds::fill_keys(&mut v, &app);
    }
    v["@odata.context"] = json!(context(&sel, true));
    Ok(Resp::json(200, &v))
}

/// The `passwordCredential` object of an addPassword body (Graph docs "application:
/// addPassword"): the caller may set the display name and validity, never the generated fields.
fn password_credential(req: &Req) -> Result<Value, Resp> {
    // An action POST without a body: Graph's recorded answer
    // (microsoftgraph/microsoft-graph-docs-contrib issue 7083, msgraph-sdk-python 1168).
    if req.body.is_empty() {
        return Err(error(
            400,
            "BadRequest",
            "Empty Payload. JSON content expected.",
        ));
    }
    let body = json_body(req)?;
    let pc = body.get("passwordCredential").cloned().unwrap_or(json!({}));
    if !pc.is_object() && !pc.is_null() {
        return Err(error(
            400,
            "Request_BadRequest",
            "passwordCredential must be an object.",
        ));
    }
    for forbidden in ["keyId", "secretText", "customKeyIdentifier"] {
        if pc.get(forbidden).is_some_and(|v| !v.is_null()) {
            return Err(error(
                400,
                "Request_BadRequest",
                &format!(
                    "Property '{forbidden}' cannot be set by the caller on addPassword; the service generates it."
                ),
            ));
        }
    }
    Ok(pc)
}

/// An optional `Edm.DateTimeOffset` property of the password credential.
fn optional_date(pc: &Value, k: &str) -> Result<Option<DateTime<Utc>>, Resp> {
    match pc.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s).map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| error(400, "Request_BadRequest", &format!("Cannot convert the literal '{s}' to the expected type 'Edm.DateTimeOffset'."))),
        Some(_) => Err(error(400, "Request_BadRequest", &format!("{k} must be a string."))),
    }
}

/// The new password's validity: from now (or the given start) for two years unless an end is
/// given (Graph docs "passwordCredential resource type"); the end must follow the start.
fn validity_window(pc: &Value, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), Resp> {
    let start = optional_date(pc, "startDateTime")?.unwrap_or(now);
    let end = optional_date(pc, "endDateTime")?.unwrap_or(start + Duration::days(730));
    if end <= start {
        return Err(error(
            400,
            "Request_BadRequest",
            "Key credential end date time must be greater than start date time.",
        ));
    }
    Ok((start, end))
}

fn optional_display_name(pc: &Value) -> Result<Option<String>, Resp> {
    match pc.get("displayName") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(error(
            400,
            "Request_BadRequest",
            "displayName must be a string.",
        )),
    }
}

/// `POST /applications/{id}/addPassword` (Graph docs "application: addPassword"): the only
/// answer that carries the generated `secretText`.
fn add_password(st: &mut Tenant, req: &Req, r: &AppRef, c: &Claims, now: DateTime<Utc>) -> Answer {
    let i = permitted_app(st, r, c, Need::Write)?;
    let pc = password_credential(req)?;
    let (start, end) = validity_window(&pc, now)?;
    tenant_policy_allows(st, c, end - start)?;
    personal_account_cap(&st.apps[i])?;
    let display_name = optional_display_name(&pc)?;
    charge_write(st, c.appid, now)?;
    let secret = secret_text();
    let p = Password {
        key_id: Uuid::new_v4(),
        display_name,
        hint: secret.chars().take(3).collect(),
        secret: secret.clone(),
        start,
        end,
        added_at: now,
    };
    let mut v = password_json(&p, Some(&secret));
    v["@odata.context"] =
        json!("https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.passwordCredential");
    st.apps[i].passwords.push(p);
    Ok(Resp::json(200, &v))
}

/// `POST /applications/{id}/removePassword` (Graph docs "application: removePassword").
fn remove_password(
    st: &mut Tenant,
    req: &Req,
    r: &AppRef,
    c: &Claims,
    now: DateTime<Utc>,
) -> Answer {
    let i = permitted_app(st, r, c, Need::Write)?;
    let body = json_body(req)?;
    let kid = required_text(&body, "keyId")?;
    let Ok(kid) = Uuid::parse_str(kid) else {
        return Err(error(
            400,
            "Request_BadRequest",
            &format!("Invalid keyId '{kid}': not a GUID."),
        ));
    };
    charge_write(st, c.appid, now)?;
    let before = st.apps[i].passwords.len();
    st.apps[i].passwords.retain(|p| p.key_id != kid);
    if st.apps[i].passwords.len() == before {
        // Documented choice: an unknown keyId is 404 Request_ResourceNotFound.
        return Err(not_found(&kid.to_string()));
    }
    Ok(Resp::empty(204))
}

/// `GET /applications/{id}/owners` (Graph docs "List owners of an application").
fn list_owners(st: &Tenant, r: &AppRef, c: &Claims) -> Answer {
    let i = permitted_app(st, r, c, Need::Read)?;
    let owners: Vec<Value> = st.apps[i]
        .owners
        .iter()
        .map(|o| directory_object(st, *o))
        .collect();
    Ok(Resp::json(
        200,
        &json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects", "value": owners}),
    ))
}

/// The directory object an `owners/$ref` body points at (`@odata.id`, its last segment).
fn owner_reference(req: &Req) -> Result<Uuid, Resp> {
    let body = json_body(req)?;
    let odata = required_text(&body, "@odata.id")?;
    let id = odata.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    Uuid::parse_str(id).map_err(|_| {
        error(
            400,
            "Request_BadRequest",
            &format!("Invalid object identifier '{id}'."),
        )
    })
}

/// `POST /applications/{id}/owners/$ref` (Graph docs "Add owner"): the new owner must be a
/// service principal in the tenant and not an owner already.
fn add_owner(st: &mut Tenant, req: &Req, r: &AppRef, c: &Claims, now: DateTime<Utc>) -> Answer {
    let i = permitted_app(st, r, c, Need::Write)?;
    let oid = owner_reference(req)?;
    if !is_service_principal(st, oid) {
        return Err(not_found(&oid.to_string()));
    }
    if st.apps[i].owners.contains(&oid) {
        return Err(error(
            400,
            "Request_BadRequest",
            "One or more added object references already exist for the following modified properties: 'owners'.",
        ));
    }
    charge_write(st, c.appid, now)?;
    st.apps[i].owners.push(oid);
    Ok(Resp::empty(204))
}

fn is_service_principal(st: &Tenant, oid: Uuid) -> bool {
    st.mis.iter().any(|m| m.principal_id == oid) || st.apps.iter().any(|a| a.sp_id == oid)
}

/// The object id of the service principal a request names, by object id or by appId.
fn service_principal_oid(st: &Tenant, sp: &SpRef) -> Option<Uuid> {
    match sp {
        SpRef::ObjectId(id) => Uuid::parse_str(id)
            .ok()
            .filter(|u| is_service_principal(st, *u)),
        SpRef::AppId(id) => Uuid::parse_str(id).ok().and_then(|u| {
            st.apps
                .iter()
                .find(|a| a.app_id == u)
                .map(|a| a.sp_id)
                .or_else(|| {
                    st.mis
                        .iter()
                        .find(|m| m.client_id == u)
                        .map(|m| m.principal_id)
                })
        }),
    }
}

/// `GET /servicePrincipals/{id}/ownedObjects[/microsoft.graph.application]` (Graph docs "List
/// ownedObjects"). Only applications are modelled as owned objects, so the cast changes nothing.
fn list_owned_objects(st: &Tenant, req: &Req, sp: &SpRef, c: &Claims) -> Answer {
    let Some(oid) = service_principal_oid(st, sp) else {
        return Err(not_found(match sp {
            SpRef::ObjectId(s) | SpRef::AppId(s) => s,
        }));
    };
    // Reading your own owned objects needs no directory role; someone else's needs read.
    if oid != c.oid && !reads_all_apps(c) {
        return Err(denied());
    }
    let sel = parse_select(req)?;
    let items: Vec<Value> = st
        .apps
        .iter()
        .filter(|a| a.owners.contains(&oid))
        .map(|a| {
            let mut v = select(app_json(a), &sel);
            v["@odata.type"] = json!("#microsoft.graph.application");
            v
        })
        .collect();
    Ok(Resp::json(
        200,
        &json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects", "value": items}),
    ))
}

#[derive(Clone, Copy, PartialEq)]
enum KeyOp {
    Add,
    Remove,
    Patch,
}

/// addKey / removeKey / PATCH keyCredentials (keycreds.rs). An application may roll its own
/// keys without any permission (application-addkey.md); PATCH needs write permission.
fn key_route(
    st: &mut Tenant,
    req: &Req,
    op: KeyOp,
    r: &AppRef,
    c: &Claims,
    now: DateTime<Utc>,
) -> Answer {
    let i = locate_app(st, r, c)?;
    let own = op != KeyOp::Patch && c.appid == st.apps[i].app_id;
    if !own && !allowed(c, &st.apps[i], Need::Write) {
        return Err(denied());
    }
    charge_write(st, c.appid, now)?;
    let before = crate::keycreds::records(&st.apps[i]);
    let (answer, operation) = match op {
        KeyOp::Add => (crate::keycreds::add_key(st, i, req, c, now), "addKey"),
        KeyOp::Remove => (crate::keycreds::remove_key(st, i, req, now), "removeKey"),
        KeyOp::Patch => (
            crate::keycreds::patch(st, i, req, c, now),
            "updateApplication",
        ),
    };
    let after = crate::keycreds::records(&st.apps[i]);
    if after != before {
        let app_id = st.apps[i].app_id;
        st.key_writes.push(crate::keycreds::KeyWrite {
            time: now,
            app_id,
            caller: c.appid,
            operation,
            before,
            after,
        });
    }
    answer
}

fn directory_object(st: &Tenant, oid: Uuid) -> Value {
    if let Some(m) = st.mis.iter().find(|m| m.principal_id == oid) {
        return json!({"@odata.type": "#microsoft.graph.servicePrincipal", "id": m.principal_id, "appId": m.client_id, "displayName": m.name, "servicePrincipalType": "ManagedIdentity"});
    }
    if let Some(a) = st.apps.iter().find(|a| a.sp_id == oid) {
        return json!({"@odata.type": "#microsoft.graph.servicePrincipal", "id": a.sp_id, "appId": a.app_id, "displayName": a.display_name, "servicePrincipalType": "Application"});
    }
    json!({"@odata.type": "#microsoft.graph.directoryObject", "id": oid})
}

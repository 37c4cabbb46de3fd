//! Microsoft Graph v1.0 application credentials: read an application's passwords, add one,
//! remove one, and enumerate applications (all, or those the rotator owns).
//!
//! Plain reqwest with a bearer token for `{graph}/.default`. Every write first takes a token from
//! a [`WriteLimiter`] shared by all callers, so many rotations in parallel stay under Graph's
//! write quota (3,000 writes per 150 s per app and tenant) instead of discovering it through 429s.
//! Lists are pulled page by page ([`AppPager::next_page`]) following `@odata.nextLink`
//! verbatim; no caller ever holds more than one page.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use super::common::{Bearer, Failure, Idempotency, ServiceOptions};
use super::credential::identity_from_jwt;
use super::error::{Error, ErrorKind, Service};
use crate::cloud::Cloud;
use crate::domain::{CertificateInfo, ListedApp, TokenIdentity};
use crate::planner::model::{AppState, PasswordInfo};
use crate::policy::model::AppRef;
use crate::secret::SecretValue;

const SELECT: &str = "id,appId,displayName,passwordCredentials";
/// Lists also take the certificates, for the inventory (`secret-rotator report`).
const LIST_SELECT: &str = "id,appId,displayName,passwordCredentials,keyCredentials";

const GET_APP: &str = "get application";
const ADD_PASSWORD: &str = "addPassword";
const REMOVE_PASSWORD: &str = "removePassword";
const LIST: &str = "list applications";

fn object(object_id: Uuid) -> String {
    format!("application with object id {object_id}")
}

/// What happened to a removePassword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed,
    /// The application exists but has no password with that keyId: an earlier run (or a
    /// person) already removed it. The executor treats it as done.
    AlreadyGone,
}

/// Client-side limit on Graph writes, shared by every caller of one identity and tenant: the
/// composition root (`compose::compose`) makes one per engine and hands it to every
/// Graph client it builds.
///
/// Default ([`WriteLimiter::sliding`]): at most 2,400 writes in any 150 s, i.e. 80 % of Graph's
/// 3,000 writes per 150 s per app and tenant, leaving room for a person's portal clicks and for
/// the other instance during a scale-out. It is a sliding window, the same shape as Graph's own
/// quota, so a pass of up to 2,400 rotations is never slowed by it (a token bucket refilling at
/// 16/s after a burst of 100 held 1,000 rotations to ~56 s for no benefit: see
/// docs/performance.md). [`WriteLimiter::new`] keeps the token bucket for callers that want
/// writes spaced out.
#[derive(Debug)]
pub struct WriteLimiter {
    kind: LimiterKind,
}

#[derive(Debug)]
enum LimiterKind {
    Bucket {
        capacity: f64,
        per_second: f64,
        state: Mutex<(f64, Instant)>,
    },
    /// The times of the writes granted within the last `window`, oldest first.
    Window {
        writes: usize,
        window: Duration,
        granted: Mutex<std::collections::VecDeque<Instant>>,
    },
}

impl WriteLimiter {
    /// Token bucket: `writes` per `window`, bursting at most `burst` at once. Zero values are
    /// raised to the smallest sensible ones rather than dividing by zero.
    pub fn new(writes: u32, window: Duration, burst: u32) -> Self {
        let window = window.max(Duration::from_millis(1));
        let capacity = f64::from(burst.max(1));
        Self {
            kind: LimiterKind::Bucket {
                capacity,
                per_second: f64::from(writes.max(1)) / window.as_secs_f64(),
                state: Mutex::new((capacity, Instant::now())),
            },
        }
    }

    /// Sliding window: at most `writes` grants in any `window` (zero values raised to 1).
    pub fn sliding(writes: u32, window: Duration) -> Self {
        Self {
            kind: LimiterKind::Window {
                writes: writes.max(1) as usize,
                window: window.max(Duration::from_millis(1)),
                granted: Mutex::new(std::collections::VecDeque::new()),
            },
        }
    }

    /// Waits until a write may be sent, then takes its slot.
    pub async fn acquire(&self) {
        loop {
            let wait = match &self.kind {
                LimiterKind::Bucket {
                    capacity,
                    per_second,
                    state,
                } => {
                    let mut st = state.lock().await;
                    let now = Instant::now();
                    let elapsed = now.duration_since(st.1).as_secs_f64();
                    st.0 = (st.0 + elapsed * per_second).min(*capacity);
                    st.1 = now;
                    if st.0 >= 1.0 {
                        st.0 -= 1.0;
                        return;
                    }
                    Duration::from_secs_f64((1.0 - st.0) / per_second)
                }
                LimiterKind::Window {
                    writes,
                    window,
                    granted,
                } => {
                    let mut g = granted.lock().await;
                    let now = Instant::now();
                    while g.front().is_some_and(|t| now.duration_since(*t) >= *window) {
                        g.pop_front();
                    }
                    if g.len() < *writes {
                        g.push_back(now);
                        return;
                    }
                    // Full: the oldest grant leaves the window first.
                    let oldest = *g.front().expect("a full window is not empty");
                    (oldest + *window).saturating_duration_since(now)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Default for WriteLimiter {
    fn default() -> Self {
        Self::sliding(2400, Duration::from_secs(150))
    }
}

#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    options: ServiceOptions,
    bearer: Bearer,
    /// `https://graph.microsoft.com/v1.0`
    base: String,
    limiter: Arc<WriteLimiter>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    pub fn new(
        cloud: Cloud,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
        limiter: Arc<WriteLimiter>,
    ) -> Self {
        Self {
            http: options.http.clone(),
            bearer: Bearer::new(credential, cloud.graph_scope()),
            base: format!("{}/v1.0", cloud.graph_endpoint()),
            options,
            limiter,
        }
    }

    fn app_path(app: &AppRef) -> String {
        match app {
            AppRef::ObjectId(id) => format!("applications/{id}"),
            AppRef::AppId(id) => format!("applications(appId='{id}')"),
        }
    }

    fn describe(app: &AppRef) -> String {
        match app {
            AppRef::ObjectId(id) => format!("application with object id {id}"),
            AppRef::AppId(id) => format!("application with appId {id}"),
        }
    }

    /// Who this client signs in as, read from its own Graph token (`oid`, `roles`); the token
    /// itself goes nowhere else.
    pub async fn caller_identity(&self) -> Result<TokenIdentity, Error> {
        const OP: &str = "read the caller's identity";
        let token =
            self.bearer.token().await.map_err(|m| {
                Error::new(ErrorKind::Credential, Service::Graph, OP).with_detail(m)
            })?;
        identity_from_jwt(&token).map_err(|m| Error::bad_answer(Service::Graph, OP, m))
    }

    /// The application and its passwords (never their text).
    pub async fn get_application(&self, app: &AppRef) -> Result<AppState, Error> {
        let url = format!("{}/{}", self.base, Self::app_path(app));
        let reply = super::common::send(
            &self.options.retry,
            Idempotency::Idempotent,
            Some(&self.bearer),
            || self.http.get(&url).query(&[("$select", SELECT)]),
        )
        .await
        .map_err(|f| Error::from_failure(Service::Graph, GET_APP, &f).on(Self::describe(app)))?;
        parse_application(&reply.body).map_err(|m| Error::bad_answer(Service::Graph, GET_APP, m))
    }

    /// Adds a password; Graph generates the secret and returns it this once.
    pub async fn add_password(
        &self,
        object_id: Uuid,
        display_name: &str,
        end: DateTime<Utc>,
    ) -> Result<(PasswordInfo, SecretValue), Error> {
        let url = format!("{}/applications/{object_id}/addPassword", self.base);
        let body = serde_json::json!({
            "passwordCredential": {
                "displayName": display_name,
                "endDateTime": end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }
        });
        self.limiter.acquire().await;
        // Not idempotent: a repeat after an unknown outcome could add a second password. The
        // executor recognises such an orphan by its displayName marker on the next observe.
        let reply = super::common::send(
            &self.options.retry,
            Idempotency::NotIdempotent,
            Some(&self.bearer),
            || self.http.post(&url).json(&body),
        )
        .await
        .map_err(|f| Error::from_failure(Service::Graph, ADD_PASSWORD, &f).on(object(object_id)))?;
        parse_added_password(&reply.body)
            .map_err(|m| Error::bad_answer(Service::Graph, ADD_PASSWORD, m))
    }

    /// Removes a password. A keyId the application no longer has is [`RemoveOutcome::AlreadyGone`].
    ///
    /// Graph's answer for an unknown keyId is not documented (400 or 404 in reports), so on any
    /// 400/404 the application is read back: present without the key → `AlreadyGone`; absent →
    /// `NotFound`; still holding the key → the original error.
    pub async fn remove_password(
        &self,
        object_id: Uuid,
        key_id: Uuid,
    ) -> Result<RemoveOutcome, Error> {
        let url = format!("{}/applications/{object_id}/removePassword", self.base);
        let body = serde_json::json!({ "keyId": key_id });
        self.limiter.acquire().await;
        let result = super::common::send(
            &self.options.retry,
            Idempotency::Idempotent,
            Some(&self.bearer),
            || self.http.post(&url).json(&body),
        )
        .await;
        let failure = match result {
            Ok(_) => return Ok(RemoveOutcome::Removed),
            Err(f) => f,
        };
        let refused =
            || Error::from_failure(Service::Graph, REMOVE_PASSWORD, &failure).on(object(object_id));
        let is_missing_kind = matches!(
            &failure,
            Failure::Status {
                status: 400 | 404,
                ..
            }
        );
        if !is_missing_kind {
            return Err(refused());
        }
        match self.get_application(&AppRef::ObjectId(object_id)).await {
            Ok(app) if app.passwords.iter().all(|p| p.key_id != key_id) => {
                Ok(RemoveOutcome::AlreadyGone)
            }
            Ok(_) => Err(refused()),
            Err(e) => Err(e),
        }
    }

    /// Every application visible to the caller, page by page (`$filter` optional, e.g.
    /// `appId eq '…'`). Needs `Application.Read.All` or higher to see apps it does not own.
    pub fn list_applications(&self, filter: Option<&str>, page_size: u32) -> AppPager {
        let mut url = url::Url::parse(&format!("{}/applications", self.base))
            .expect("the Graph base URL is a constant and valid");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("$select", LIST_SELECT);
            q.append_pair("$top", &page_size.clamp(1, 999).to_string());
            if let Some(f) = filter {
                q.append_pair("$filter", f);
            }
        }
        AppPager {
            client: self.clone(),
            next: Some(url.to_string()),
            only_applications: false,
        }
    }

    /// Every service principal, page by page, with the credentials it holds itself (SAML
    /// signing certificates, the odd password added to an SP). Each comes back as a
    /// [`ListedApp`] whose `app.object_id` is the service principal's id. Needs
    /// `Application.Read.All` or higher.
    pub fn list_service_principals(&self, page_size: u32) -> AppPager {
        let mut url = url::Url::parse(&format!("{}/servicePrincipals", self.base))
            .expect("the Graph base URL is a constant and valid");
        url.query_pairs_mut()
            .append_pair("$select", LIST_SELECT)
            .append_pair("$top", &page_size.clamp(1, 999).to_string());
        AppPager {
            client: self.clone(),
            next: Some(url.to_string()),
            only_applications: false,
        }
    }

    /// The applications the signed-in user owns (`me/ownedObjects`): the owned-only listing
    /// for an operator signed in with the Azure CLI, whose token is a user's.
    pub fn my_owned_applications(&self) -> AppPager {
        AppPager {
            client: self.clone(),
            next: Some(format!("{}/me/ownedObjects", self.base)),
            only_applications: true,
        }
    }

    /// The applications a service principal owns (`servicePrincipals/{id}/ownedObjects`), the
    /// reliable enumeration under `Application.ReadWrite.OwnedBy`. Other directory objects in
    /// the answer (service principals, groups) are skipped.
    pub fn owned_applications(&self, sp_object_id: Uuid) -> AppPager {
        AppPager {
            client: self.clone(),
            next: Some(format!(
                "{}/servicePrincipals/{sp_object_id}/ownedObjects",
                self.base
            )),
            only_applications: true,
        }
    }
}

/// Pulls one page of applications at a time.
pub struct AppPager {
    client: GraphClient,
    next: Option<String>,
    only_applications: bool,
}

impl AppPager {
    /// The next page, or `None` when there are no more. An empty page with a nextLink is
    /// returned as an empty `Vec` (Graph may do that); keep calling until `None`.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AppState>>, Error> {
        Ok(self
            .next_listing()
            .await?
            .map(|page| page.into_iter().map(|l| l.app).collect()))
    }

    /// Like [`Self::next_page`], with each application's certificates too.
    pub async fn next_listing(&mut self) -> Result<Option<Vec<ListedApp>>, Error> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let c = &self.client;
        let reply = super::common::send(
            &c.options.retry,
            Idempotency::Idempotent,
            Some(&c.bearer),
            || c.http.get(&url),
        )
        .await
        .map_err(|f| Error::from_failure(Service::Graph, LIST, &f))?;
        let bad = |m| Error::bad_answer(Service::Graph, LIST, m);
        let page = parse_page(&reply.body, self.only_applications).map_err(bad)?;
        self.next = page
            .next_link
            .map(|l| same_graph_host(&c.base, &l).map(|()| l))
            .transpose()
            .map_err(bad)?;
        Ok(Some(page.apps))
    }
}

/// `@odata.nextLink` is followed with the bearer token, so only when it is https on the
/// configured Graph host (and port); anything else is an error naming where it pointed.
fn same_graph_host(base: &str, link: &str) -> Result<(), String> {
    let origin = |u: &url::Url| {
        (
            u.scheme().to_string(),
            u.host_str().map(str::to_ascii_lowercase),
            u.port_or_known_default(),
        )
    };
    let base = url::Url::parse(base).map_err(|e| format!("the Graph base URL is invalid: {e}"))?;
    let next = url::Url::parse(link)
        .map_err(|e| format!("@odata.nextLink is not a URL ({e}); not followed"))?;
    if next.scheme() == "https" && origin(&next) == origin(&base) {
        return Ok(());
    }
    Err(format!(
        "@odata.nextLink points at {}://{}, not https://{}: not followed (the token goes only to the configured Graph host)",
        next.scheme(),
        next.host_str().unwrap_or("(no host)"),
        base.host_str().unwrap_or_default()
    ))
}

// ---- answer parsing (pure; unit-tested on malformed input) ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPassword {
    key_id: Option<String>,
    display_name: Option<String>,
    hint: Option<String>,
    start_date_time: Option<String>,
    end_date_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawApp {
    id: Option<String>,
    app_id: Option<String>,
    display_name: Option<String>,
    password_credentials: Option<Vec<RawPassword>>,
    /// Absent when not selected (single reads); lists select it.
    key_credentials: Option<Vec<RawKey>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    key_id: Option<String>,
    display_name: Option<String>,
    start_date_time: Option<String>,
    end_date_time: Option<String>,
}

fn certificates(raw: &RawApp) -> Result<Vec<CertificateInfo>, String> {
    raw.key_credentials
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, k)| {
            let at = format!("keyCredentials[{i}]");
            Ok(CertificateInfo {
                key_id: uuid_field(k.key_id.as_deref(), &format!("{at}.keyId"))?,
                display_name: k.display_name.clone(),
                start: time_field(k.start_date_time.as_deref(), &format!("{at}.startDateTime"))?,
                end: time_field(k.end_date_time.as_deref(), &format!("{at}.endDateTime"))?,
            })
        })
        .collect()
}

fn uuid_field(v: Option<&str>, field: &str) -> Result<Uuid, String> {
    let s = v.ok_or_else(|| format!("field '{field}' is missing"))?;
    Uuid::parse_str(s).map_err(|_| format!("field '{field}' is not a GUID: '{s}'"))
}

fn time_field(v: Option<&str>, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| format!("field '{field}' is not an ISO-8601 time: '{s}'")),
    }
}

fn password_info(p: &RawPassword, at: &str) -> Result<PasswordInfo, String> {
    Ok(PasswordInfo {
        key_id: uuid_field(p.key_id.as_deref(), &format!("{at}.keyId"))?,
        display_name: p.display_name.clone(),
        hint: p.hint.clone(),
        start: time_field(p.start_date_time.as_deref(), &format!("{at}.startDateTime"))?,
        end: time_field(p.end_date_time.as_deref(), &format!("{at}.endDateTime"))?,
    })
}

fn app_state(raw: RawApp) -> Result<AppState, String> {
    let passwords = raw
        .password_credentials
        .ok_or("field 'passwordCredentials' is missing")?
        .iter()
        .enumerate()
        .map(|(i, p)| password_info(p, &format!("passwordCredentials[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppState {
        object_id: uuid_field(raw.id.as_deref(), "id")?,
        app_id: uuid_field(raw.app_id.as_deref(), "appId")?,
        display_name: raw.display_name.unwrap_or_default(),
        passwords,
    })
}

pub(crate) fn parse_application(body: &[u8]) -> Result<AppState, String> {
    let raw: RawApp = super::common::parse_json("application", body)?;
    app_state(raw)
}

pub(crate) fn parse_added_password(body: &[u8]) -> Result<(PasswordInfo, SecretValue), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Added {
        #[serde(flatten)]
        info: RawPassword,
        secret_text: Option<SecretValue>,
    }
    let raw: Added = super::common::parse_json("addPassword answer", body)?;
    let info = password_info(&raw.info, "passwordCredential")?;
    let secret = raw
        .secret_text
        .filter(|s| !s.is_empty())
        .ok_or("field 'secretText' is missing or empty")?;
    Ok((info, secret))
}

#[derive(Debug)]
pub(crate) struct Page {
    apps: Vec<ListedApp>,
    next_link: Option<String>,
}

pub(crate) fn parse_page(body: &[u8], only_applications: bool) -> Result<Page, String> {
    #[derive(Deserialize)]
    struct RawPage {
        value: Option<Vec<serde_json::Value>>,
        #[serde(rename = "@odata.nextLink")]
        next_link: Option<String>,
    }
    let raw: RawPage = super::common::parse_json("application list", body)?;
    let value = raw.value.ok_or("field 'value' is missing")?;
    let mut apps = Vec::with_capacity(value.len());
    for (i, item) in value.into_iter().enumerate() {
        if only_applications {
            let ty = item.get("@odata.type").and_then(|t| t.as_str());
            if ty != Some("#microsoft.graph.application") {
                continue;
            }
        }
        let raw: RawApp = serde_json::from_value(item).map_err(|e| format!("value[{i}]: {e}"))?;
        let certificates = certificates(&raw).map_err(|e| format!("value[{i}]: {e}"))?;
        let app = app_state(raw).map_err(|e| format!("value[{i}]: {e}"))?;
        apps.push(ListedApp { app, certificates });
    }
    Ok(Page {
        apps,
        next_link: raw.next_link.filter(|l| !l.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"{"id":"00af5dfb-85da-4b41-a677-0c6b86dd34f8","appId":"11111111-2222-3333-4444-555555555555","displayName":"payments-api","passwordCredentials":[{"customKeyIdentifier":null,"displayName":"rotator:2024-07-15","endDateTime":"2025-01-31T00:00:00Z","hint":"Ab1","keyId":"f0b0b335-1d71-4883-8f98-567911bfdca6","secretText":null,"startDateTime":"2024-07-15T02:00:00Z"}]}"#;

    #[test]
    fn parses_an_application() {
        let a = parse_application(APP.as_bytes()).unwrap();
        assert_eq!(a.display_name, "payments-api");
        assert_eq!(a.passwords.len(), 1);
        assert_eq!(a.passwords[0].hint.as_deref(), Some("Ab1"));
        assert_eq!(
            a.passwords[0].end.unwrap().to_rfc3339(),
            "2025-01-31T00:00:00+00:00"
        );
    }

    #[test]
    fn malformed_applications_are_errors_naming_the_field() {
        assert!(parse_application(b"not json").is_err());
        assert!(parse_application(b"[]").is_err());
        let no_pw = r#"{"id":"00af5dfb-85da-4b41-a677-0c6b86dd34f8","appId":"11111111-2222-3333-4444-555555555555"}"#;
        assert!(
            parse_application(no_pw.as_bytes())
                .unwrap_err()
                .contains("passwordCredentials")
        );
        let bad_id = APP.replace("00af5dfb-85da-4b41-a677-0c6b86dd34f8", "xyz");
        assert!(
            parse_application(bad_id.as_bytes())
                .unwrap_err()
                .contains("'id'")
        );
        let bad_time = APP.replace("2025-01-31T00:00:00Z", "tomorrow");
        assert!(
            parse_application(bad_time.as_bytes())
                .unwrap_err()
                .contains("endDateTime")
        );
        let wrong_type = APP.replace("\"Ab1\"", "12");
        assert!(parse_application(wrong_type.as_bytes()).is_err());
        let no_key = APP.replace("\"keyId\":\"f0b0b335-1d71-4883-8f98-567911bfdca6\",", "");
        assert!(
            parse_application(no_key.as_bytes())
                .unwrap_err()
                .contains("keyId")
        );
    }

    #[test]
    fn added_password_needs_secret_text_and_never_shows_it() {
        let ok = r#"{"displayName":"x","endDateTime":"2025-07-15T02:00:00Z","hint":"eGk","keyId":"9f0e8c3e-3c1b-4b0e-9a53-2f0f2d1b7a11","secretText":"eGk8Q~abcdefghijkl","startDateTime":"2025-01-15T02:00:00Z"}"#;
        let (info, secret) = parse_added_password(ok.as_bytes()).unwrap();
        assert_eq!(secret.expose(), "eGk8Q~abcdefghijkl");
        assert_eq!(info.hint.as_deref(), Some("eGk"));
        let missing = ok.replace("\"secretText\":\"eGk8Q~abcdefghijkl\",", "");
        let err = parse_added_password(missing.as_bytes()).unwrap_err();
        assert!(err.contains("secretText"));
        let bad = ok.replace("9f0e8c3e-3c1b-4b0e-9a53-2f0f2d1b7a11", "nope");
        let err = parse_added_password(bad.as_bytes()).unwrap_err();
        assert!(!err.contains("abcdefghijkl"), "{err}");
    }

    /// Was: the pager sent its bearer token to whatever host `@odata.nextLink` named.
    #[test]
    fn next_link_only_to_https_on_the_graph_host() {
        let base = "https://graph.microsoft.com/v1.0";
        assert!(
            same_graph_host(
                base,
                "https://graph.microsoft.com/v1.0/applications?$skiptoken=x"
            )
            .is_ok()
        );
        assert!(same_graph_host(base, "https://GRAPH.microsoft.com:443/v1.0/x").is_ok());
        for bad in [
            "https://evil.example/v1.0/applications?$skiptoken=x",
            "http://graph.microsoft.com/v1.0/applications",
            "https://graph.microsoft.com.evil.example/v1.0",
            "https://graph.microsoft.com:8443/v1.0",
            "not a url",
        ] {
            let e = same_graph_host(base, bad).unwrap_err();
            assert!(e.contains("not followed"), "{bad}: {e}");
        }
        let e = same_graph_host(base, "https://evil.example/x").unwrap_err();
        assert!(
            e.contains("https://evil.example") && e.contains("graph.microsoft.com"),
            "{e}"
        );
    }

    #[test]
    fn pages_follow_next_link_and_skip_non_applications() {
        let body = format!(
            r##"{{"@odata.nextLink":"https://graph.microsoft.com/v1.0/x?$skiptoken=a","value":[{},{{"@odata.type":"#microsoft.graph.servicePrincipal","id":"1"}}]}}"##,
            APP.replacen(
                '{',
                r##"{"@odata.type":"#microsoft.graph.application","##,
                1
            )
        );
        let p = parse_page(body.as_bytes(), true).unwrap();
        assert_eq!(p.apps.len(), 1);
        assert_eq!(
            p.next_link.as_deref(),
            Some("https://graph.microsoft.com/v1.0/x?$skiptoken=a")
        );
        assert!(
            parse_page(body.as_bytes(), false).is_err(),
            "an SP is not an application"
        );
        assert!(parse_page(br#"{"value":{}}"#, false).is_err());
        assert!(parse_page(br#"{}"#, false).unwrap_err().contains("value"));
    }

    #[test]
    fn list_pages_carry_certificates_and_reject_bad_ones() {
        let with_cert = APP.replacen(
            "\"passwordCredentials\"",
            r#""keyCredentials":[{"keyId":"7d1c3b2a-1111-4222-8333-944455556666","displayName":"CN=sign","type":"AsymmetricX509Cert","usage":"Verify","startDateTime":"2025-01-01T00:00:00Z","endDateTime":"2027-01-01T00:00:00Z","key":null}],"passwordCredentials""#,
            1,
        );
        let body = format!(r#"{{"value":[{with_cert},{APP}]}}"#);
        let p = parse_page(body.as_bytes(), false).unwrap();
        assert_eq!(p.apps[0].certificates.len(), 1);
        assert_eq!(
            p.apps[0].certificates[0].display_name.as_deref(),
            Some("CN=sign")
        );
        assert!(
            p.apps[1].certificates.is_empty(),
            "not selected = none listed"
        );
        let bad = body.replace("2027-01-01T00:00:00Z", "soon");
        let err = parse_page(bad.as_bytes(), false).unwrap_err();
        assert!(err.contains("keyCredentials[0].endDateTime"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn write_limiter_spaces_writes_beyond_the_burst() {
        let l = WriteLimiter::new(10, Duration::from_secs(1), 2);
        let t0 = Instant::now();
        l.acquire().await;
        l.acquire().await;
        assert_eq!(t0.elapsed(), Duration::ZERO, "the burst passes at once");
        l.acquire().await;
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(99) && waited <= Duration::from_millis(110),
            "third write waits one refill interval, waited {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sliding_limiter_lets_the_window_through_then_waits_for_the_oldest_grant() {
        let l = WriteLimiter::sliding(3, Duration::from_secs(150));
        let t0 = Instant::now();
        for _ in 0..3 {
            l.acquire().await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "a full window passes at once");
        tokio::time::advance(Duration::from_secs(100)).await;
        l.acquire().await;
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(150),
            "the fourth write waits until the first leaves the 150 s window"
        );
        // Never more than 3 in any 150 s: the next one waits for the second grant's exit.
        let t1 = Instant::now();
        l.acquire().await;
        assert_eq!(
            t1.elapsed(),
            Duration::ZERO,
            "second and third left at 150 s too"
        );
    }
}

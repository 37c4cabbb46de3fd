//! The rotator's own blob container: a per-credential lease (so two runs never rotate the same
//! credential at once), and JSON documents for audit records
//! (`audit/{yyyy}/{mm}/{dd}/{credential}-{run}.json`) and run outcomes (`runs/{run}.json`,
//! `last/{credential}.json`).
//!
//! Blob REST through the shared reqwest client with a bearer token for
//! `https://storage.azure.com/.default`, rather than the `azure_storage_blob` crate, which has
//! every operation needed (leases included) but whose `download` is a partitioned multi-range
//! transfer that, by its own documentation, needs a transport with automatic decompression
//! turned off; the shared client cannot promise that (azure_core's default `reqwest_gzip`
//! feature turns gzip on for every reqwest client in the build). The few calls used here are
//! small and stable (x-ms-version [`API_VERSION`]), and their errors come back with
//! Storage's own codes (`LeaseAlreadyPresent`, `BlobNotFound`, ...) which we need exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use reqwest::Method;
use uuid::Uuid;

use super::common::{Bearer, Failure, Idempotency, Reply, ServiceOptions};
use super::error::{Error, ErrorKind, Service};
use crate::cloud::Cloud;

/// Blob service version sent as `x-ms-version` (bearer tokens need 2017-11-09 or later).
pub const API_VERSION: &str = "2023-11-03";
/// Lease length: long enough to survive a slow renewal, short enough that a crashed run's lock
/// frees itself within a minute.
pub const LEASE_SECONDS: u32 = 60;
/// Renew at a third of the lease, so two renewals can fail before it lapses.
const RENEW_EVERY: Duration = Duration::from_secs(20);
const LIST: &str = "list blobs";
const LEASE: &str = "acquire a lease";

/// A storage failure as an [`Error`]: Storage's XML error body re-read as Azure's JSON shape
/// first, so the one classifier reads its code.
fn failed(f: Failure, operation: &'static str, target: impl Into<String>) -> Error {
    Error::from_failure(Service::Storage, operation, &json_error_body(f)).on(target)
}

/// Where the blob service is: `AzureWebJobsStorage__blobServiceUri` when set, else
/// `https://{account}.blob.{cloud suffix}`.
pub fn blob_endpoint(
    cloud: Cloud,
    account: &str,
    blob_service_uri: Option<&str>,
) -> Result<url::Url, Error> {
    let raw = match blob_service_uri.map(str::trim).filter(|s| !s.is_empty()) {
        Some(u) => u.to_string(),
        None => cloud.blob_url(account),
    };
    let bad = || {
        Error::invalid_input(
            Service::Storage,
            "find the blob endpoint",
            "not an https URL",
        )
        .on(format!("storage endpoint '{raw}'"))
    };
    let url = url::Url::parse(&raw).map_err(|_| bad())?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(bad());
    }
    Ok(url)
}

struct Inner {
    options: ServiceOptions,
    bearer: Bearer,
    /// `https://{account}.blob.core.windows.net/{container}` (no trailing slash).
    container_url: String,
    container_ready: AtomicBool,
}

/// One container of the rotator's storage account.
#[derive(Clone)]
pub struct StorageClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StorageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageClient")
            .field("container_url", &self.inner.container_url)
            .finish_non_exhaustive()
    }
}

impl StorageClient {
    /// `endpoint` from [`blob_endpoint`]; `container` must be a valid container name
    /// (3-63 lowercase letters, digits and single dashes).
    pub fn new(
        cloud: Cloud,
        endpoint: &url::Url,
        container: &str,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
    ) -> Result<Self, Error> {
        let valid = (3..=63).contains(&container.len())
            && container
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !container.starts_with('-')
            && !container.ends_with('-')
            && !container.contains("--");
        if !valid {
            return Err(Error::invalid_input(
                Service::Storage,
                "open the container",
                format!("'{container}' is not a valid container name"),
            ));
        }
        let base = endpoint.as_str().trim_end_matches('/');
        Ok(Self {
            inner: Arc::new(Inner {
                bearer: Bearer::new(credential, cloud.storage_scope()),
                options,
                container_url: format!("{base}/{container}"),
                container_ready: AtomicBool::new(false),
            }),
        })
    }

    fn blob_url(&self, path: &str) -> String {
        let escaped: Vec<String> = path.split('/').map(super::arm::esc).collect();
        format!("{}/{}", self.inner.container_url, escaped.join("/"))
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, Failure> {
        let i = &self.inner;
        super::common::send(
            &i.options.retry,
            Idempotency::Idempotent,
            Some(&i.bearer),
            || {
                let mut req = i
                    .options
                    .http
                    .request(method.clone(), url)
                    .query(query)
                    .header("x-ms-version", API_VERSION)
                    .header("x-ms-date", http_date());
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                match body {
                    // Storage insists on Content-Length, which hyper omits for an empty body.
                    Some([]) => req.header("content-length", "0"),
                    Some(b) => req.body(b.to_vec()),
                    None if method == Method::PUT => req.header("content-length", "0"),
                    None => req,
                }
            },
        )
        .await
    }

    /// Creates the container unless it exists (once per client).
    pub async fn ensure_container(&self) -> Result<(), Error> {
        if self.inner.container_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let url = self.inner.container_url.clone();
        match self
            .call(Method::PUT, &url, &[("restype", "container")], &[], None)
            .await
        {
            Ok(_) => {}
            Err(f) if storage_code(&f).as_deref() == Some("ContainerAlreadyExists") => {}
            Err(f) => {
                return Err(failed(
                    f,
                    "create the container",
                    format!("container {url}"),
                ));
            }
        }
        self.inner.container_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Writes (or overwrites) a JSON document.
    pub async fn put_json(&self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        self.ensure_container().await?;
        let url = self.blob_url(path);
        self.call(
            Method::PUT,
            &url,
            &[],
            &[
                ("x-ms-blob-type", "BlockBlob".to_string()),
                ("content-type", "application/json".to_string()),
            ],
            Some(bytes),
        )
        .await
        .map(|_| ())
        .map_err(|f| failed(f, "write a blob", format!("blob {path}")))
    }

    /// Reads a document; `None` when there is none.
    pub async fn get_json(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let url = self.blob_url(path);
        match self.call(Method::GET, &url, &[], &[], None).await {
            Ok(r) => Ok(Some(r.body)),
            Err(f)
                if matches!(
                    storage_code(&f).as_deref(),
                    Some("BlobNotFound" | "ContainerNotFound")
                ) =>
            {
                Ok(None)
            }
            Err(f) => Err(failed(f, "read a blob", format!("blob {path}"))),
        }
    }

    /// Names of the blobs under `prefix`, in name order (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let url = self.inner.container_url.clone();
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let mut q = vec![
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", prefix),
            ];
            if !marker.is_empty() {
                q.push(("marker", marker.as_str()));
            }
            let reply = match self.call(Method::GET, &url, &q, &[], None).await {
                Ok(r) => r,
                Err(f) if storage_code(&f).as_deref() == Some("ContainerNotFound") => {
                    return Ok(names);
                }
                Err(f) => return Err(failed(f, LIST, format!("container {url}"))),
            };
            let text = String::from_utf8_lossy(&reply.body);
            let page =
                parse_list(&text).map_err(|m| Error::bad_answer(Service::Storage, LIST, m))?;
            names.extend(page.names);
            match page.next_marker {
                Some(m) => marker = m,
                None => return Ok(names),
            }
        }
    }

    /// Takes the lease on `locks/{credential}` (creating the blob if needed), renewed in the
    /// background while the returned [`Lease`] lives. Another holder → [`ErrorKind::Busy`].
    pub async fn acquire_lease(&self, credential: &str) -> Result<Lease, Error> {
        self.ensure_container().await?;
        let path = format!("locks/{credential}");
        let url = self.blob_url(&path);
        let proposed = Uuid::new_v4().to_string();
        let mut result = self.lease_acquire(&url, &proposed).await;
        if let Err(f) = &result
            && storage_code(f).as_deref() == Some("BlobNotFound")
        {
            self.create_lock_blob(&url, &path).await?;
            result = self.lease_acquire(&url, &proposed).await;
        }
        let reply = match result {
            Ok(r) => r,
            Err(f) if storage_code(&f).as_deref() == Some("LeaseAlreadyPresent") => {
                return Err(Error::new(ErrorKind::Busy, Service::Storage, LEASE).on(path));
            }
            Err(f) => return Err(failed(f, LEASE, format!("blob {path}"))),
        };
        let id = reply
            .headers
            .get("x-ms-lease-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or(proposed);
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = self.keep_renewing(url.clone(), id.clone(), lost.clone());
        Ok(Lease {
            client: self.clone(),
            url,
            blob: path,
            id,
            lost,
            renewer: Some(renewer),
            released: false,
        })
    }

    /// First run for a credential: creates its lock blob without overwriting one another run
    /// may have created meanwhile (If-None-Match: *).
    async fn create_lock_blob(&self, url: &str, path: &str) -> Result<(), Error> {
        let created = self
            .call(
                Method::PUT,
                url,
                &[],
                &[
                    ("x-ms-blob-type", "BlockBlob".to_string()),
                    ("if-none-match", "*".to_string()),
                ],
                Some(b""),
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(f)
                if matches!(
                    storage_code(&f).as_deref(),
                    Some("BlobAlreadyExists" | "LeaseIdMissing")
                ) =>
            {
                Ok(())
            }
            Err(f) => Err(failed(f, "create the lock blob", format!("blob {path}"))),
        }
    }

    /// Renews the lease every [`RENEW_EVERY`] until a renewal fails (then flags it `lost`).
    fn keep_renewing(
        &self,
        url: String,
        id: String,
        lost: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let client = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                if client.lease_action(&url, "renew", &id).await.is_err() {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        })
    }

    async fn lease_acquire(&self, url: &str, proposed: &str) -> Result<Reply, Failure> {
        self.call(
            Method::PUT,
            url,
            &[("comp", "lease")],
            &[
                ("x-ms-lease-action", "acquire".to_string()),
                ("x-ms-lease-duration", LEASE_SECONDS.to_string()),
                ("x-ms-proposed-lease-id", proposed.to_string()),
            ],
            None,
        )
        .await
    }

    async fn lease_action(&self, url: &str, action: &str, id: &str) -> Result<(), Failure> {
        self.call(
            Method::PUT,
            url,
            &[("comp", "lease")],
            &[
                ("x-ms-lease-action", action.to_string()),
                ("x-ms-lease-id", id.to_string()),
            ],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Ends any lease on `locks/{credential}` at once (operator recovery; tests use it to
    /// stand in for a lease that expired while its holder was gone).
    pub async fn break_lease(&self, credential: &str) -> Result<(), Error> {
        let path = format!("locks/{credential}");
        let url = self.blob_url(&path);
        self.call(
            Method::PUT,
            &url,
            &[("comp", "lease")],
            &[
                ("x-ms-lease-action", "break".to_string()),
                ("x-ms-lease-break-period", "0".to_string()),
            ],
            None,
        )
        .await
        .map(|_| ())
        .map_err(|f| failed(f, "break a lease", format!("blob {path}")))
    }
}

/// A held lease on `locks/{credential}`. Renewed every 20 s in the background; released by
/// [`Lease::release`] or, best effort, when dropped.
pub struct Lease {
    client: StorageClient,
    url: String,
    blob: String,
    id: String,
    lost: Arc<AtomicBool>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("blob", &self.blob)
            .field("id", &self.id)
            .field("lost", &self.lost.load(Ordering::SeqCst))
            .finish()
    }
}

impl Lease {
    pub fn blob(&self) -> &str {
        &self.blob
    }

    /// False once a background renewal failed: stop changing things.
    pub fn is_held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
    }

    /// Renews now (the background task does this on its own; callers may before a long step).
    pub async fn renew(&self) -> Result<(), Error> {
        match self.client.lease_action(&self.url, "renew", &self.id).await {
            Ok(()) => Ok(()),
            Err(f) => {
                self.lost.store(true, Ordering::SeqCst);
                let cause = failed(f, "renew a lease", self.blob.clone());
                Err(
                    Error::new(ErrorKind::LeaseLost, Service::Storage, "renew a lease")
                        .on(self.blob.clone())
                        .with_detail(cause.to_string()),
                )
            }
        }
    }

    /// Releases the lease so the next run need not wait for it to expire.
    pub async fn release(mut self) -> Result<(), Error> {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        self.released = true;
        self.client
            .lease_action(&self.url, "release", &self.id)
            .await
            .map_err(|f| failed(f, "release a lease", self.blob.clone()))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if self.released {
            return;
        }
        // Best effort: without a runtime the lease simply expires within LEASE_SECONDS.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let url = self.url.clone();
            let id = self.id.clone();
            handle.spawn(async move {
                let _ = client.lease_action(&url, "release", &id).await;
            });
        }
    }
}

/// RFC 1123 date for `x-ms-date`.
fn http_date() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Storage errors are XML (`<Error><Code>..</Code><Message>..</Message></Error>`); re-express
/// the body as Azure's JSON error shape so the shared classifier reads the code.
fn json_error_body(f: Failure) -> Failure {
    match f {
        Failure::Status {
            status,
            body,
            retry_after,
            attempts,
        } => {
            let code = xml_text(&body, "Code");
            let message =
                xml_text(&body, "Message").map(|m| m.lines().next().unwrap_or("").to_string());
            Failure::Status {
                status,
                body: serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
                retry_after,
                attempts,
            }
        }
        other => other,
    }
}

fn storage_code(f: &Failure) -> Option<String> {
    match f {
        Failure::Status { body, .. } => xml_text(body, "Code"),
        _ => None,
    }
}

/// The unescaped text of the first `<tag>...</tag>` in `xml`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(xml_unescape(&xml[start..end]))
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

pub(crate) struct ListPage {
    names: Vec<String>,
    next_marker: Option<String>,
}

/// Reads `<EnumerationResults>`: every `<Blob><Name>` and the `<NextMarker>`.
pub(crate) fn parse_list(xml: &str) -> Result<ListPage, String> {
    if !xml.contains("<EnumerationResults") {
        return Err("blob list: no <EnumerationResults> element".into());
    }
    let mut names = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<Blob>") {
        let after = &rest[i + "<Blob>".len()..];
        let end = after
            .find("</Blob>")
            .ok_or("blob list: a <Blob> element is not closed")?;
        let blob = &after[..end];
        let name = xml_text(blob, "Name").ok_or("blob list: a <Blob> has no <Name>")?;
        names.push(name);
        rest = &after[end..];
    }
    let next_marker = xml_text(xml, "NextMarker").filter(|m| !m.is_empty());
    Ok(ListPage { names, next_marker })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_pages_parse() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="https://a.blob.core.windows.net/" ContainerName="c"><Prefix>runs/</Prefix><Blobs><Blob><Name>runs/a&amp;b.json</Name><Properties><Content-Length>2</Content-Length></Properties></Blob><Blob><Name>runs/c.json</Name></Blob></Blobs><NextMarker>2!abc</NextMarker></EnumerationResults>"#;
        let p = parse_list(xml).unwrap();
        assert_eq!(p.names, vec!["runs/a&b.json", "runs/c.json"]);
        assert_eq!(p.next_marker.as_deref(), Some("2!abc"));
        let last = r#"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#;
        let p = parse_list(last).unwrap();
        assert!(p.names.is_empty() && p.next_marker.is_none());
        assert!(parse_list("<html>").is_err());
        assert!(parse_list("<EnumerationResults><Blobs><Blob><Name>x</Name>").is_err());
        assert!(parse_list("<EnumerationResults><Blobs><Blob></Blob></Blobs>").is_err());
    }

    #[test]
    fn storage_error_codes_are_read_from_xml() {
        let f = Failure::Status {
            status: 409,
            body: "\u{feff}<?xml version=\"1.0\"?><Error><Code>LeaseAlreadyPresent</Code><Message>There is already a lease present.\nRequestId:x</Message></Error>".into(),
            retry_after: None,
            attempts: 1,
        };
        assert_eq!(storage_code(&f).as_deref(), Some("LeaseAlreadyPresent"));
        let e = failed(f, "x", "b");
        assert_eq!(e.code(), Some("LeaseAlreadyPresent"));
        assert!(e.to_string().contains("There is already a lease present."));
        assert!(!e.to_string().contains("RequestId"));
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            blob_endpoint(Cloud::Public, "st1", None).unwrap().as_str(),
            "https://st1.blob.core.windows.net/"
        );
        assert_eq!(
            blob_endpoint(Cloud::Public, "st1", Some("https://custom.example/"))
                .unwrap()
                .host_str(),
            Some("custom.example")
        );
        assert!(blob_endpoint(Cloud::Public, "st1", Some("http://plain")).is_err());
        assert!(blob_endpoint(Cloud::Public, "st1", Some("::")).is_err());
    }
}

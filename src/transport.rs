//! The one HTTP transport every Azure client shares.
//!
//! Production uses the platform's trust store (read from the distribution's bundle file when
//! there is one: [`SystemRoots`]) and real DNS. An operator (private endpoints, a
//! TLS-inspecting proxy) or dev mode and the tests can add a CA and pin host names to addresses:
//! the URLs stay the real Azure ones, only name resolution and trust change. This is the single
//! place where that happens, so there is no test-only branch anywhere else.
//!
//! Host patterns: an exact name (`login.microsoftonline.com`) or a suffix wildcard
//! (`*.vault.azure.net`), which `reqwest::ClientBuilder::resolve` cannot express on its own.
//!
//! Both are per host, never global: the extra CA is added to the platform's roots (a
//! TLS-inspecting proxy's CA does not make the real Azure roots untrusted), and only pinned
//! hosts bypass the environment's proxy (`HTTPS_PROXY`/`HTTP_PROXY`, `NO_PROXY` honoured) — a
//! proxy would otherwise connect to the name, not the pinned address; every other host still
//! goes through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("transport override '{0}' is not of the form HOST=IP:PORT (HOST may start with '*.')")]
    BadOverride(String),
    #[error("the CA certificate is not valid PEM: {0}")]
    BadCa(String),
    #[error("could not build the HTTP client: {0}")]
    Build(String),
}

/// Where to send a host name instead of asking DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOverride {
    /// `name` for an exact match, or `*.suffix` for any name under `suffix`.
    pub pattern: String,
    pub addr: SocketAddr,
}

impl HostOverride {
    /// Parses `HOST=IP:PORT`.
    pub fn parse(s: &str) -> Result<Self, TransportError> {
        let (host, addr) = s
            .split_once('=')
            .ok_or_else(|| TransportError::BadOverride(s.to_string()))?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| TransportError::BadOverride(s.to_string()))?;
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() || host.contains('/') {
            return Err(TransportError::BadOverride(s.to_string()));
        }
        Ok(Self {
            pattern: host,
            addr,
        })
    }

    fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match self.pattern.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => host == self.pattern,
        }
    }
}

/// How to build the shared HTTP client.
#[derive(Debug, Clone, Default)]
pub struct TransportConfig {
    pub overrides: Vec<HostOverride>,
    /// Extra trusted roots (PEM), added to the platform's.
    pub extra_ca_pem: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

impl TransportConfig {
    /// Parses a comma-separated list of `HOST=IP:PORT`.
    pub fn parse_overrides(list: &str) -> Result<Vec<HostOverride>, TransportError> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(HostOverride::parse)
            .collect()
    }

    /// The client. Trust: the platform's roots plus [`Self::extra_ca_pem`]. Where the
    /// distribution's bundle file exists ([`SystemRoots`]) the platform's roots are read from it
    /// alone (one file instead of the bundle and then every file of `/etc/ssl/certs`: ~140 ms
    /// of a cold start); otherwise, or when that client cannot be built, as reqwest's platform
    /// verifier reads them.
    pub fn build(&self) -> Result<reqwest::Client, TransportError> {
        let extra = self.extra_certs()?;
        if let Some(roots) = SystemRoots::from_env().bundle() {
            let mut certs = roots;
            certs.extend(extra.iter().cloned());
            match self.builder().tls_certs_only(certs).build() {
                Ok(client) => return Ok(client),
                Err(e) => {
                    tracing::debug!("the system bundle did not load ({e}); reading the store")
                }
            }
        }
        let mut b = self.builder();
        if !extra.is_empty() {
            b = b.tls_certs_merge(extra);
        }
        b.build().map_err(|e| TransportError::Build(e.to_string()))
    }

    fn extra_certs(&self) -> Result<Vec<reqwest::Certificate>, TransportError> {
        let Some(pem) = &self.extra_ca_pem else {
            return Ok(Vec::new());
        };
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| TransportError::BadCa(e.to_string()))?;
        if certs.is_empty() {
            return Err(TransportError::BadCa("no certificate found".into()));
        }
        Ok(certs)
    }

    /// Everything but the trust roots.
    fn builder(&self) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout.unwrap_or(Duration::from_secs(60)))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30));
        if !self.overrides.is_empty() {
            let env = EnvProxies::from_env();
            let pins = self.overrides.clone();
            let proxy = reqwest::Proxy::custom(move |url| env.for_url(url, &pins))
                .no_proxy(reqwest::NoProxy::from_env());
            b = b.proxy(proxy).dns_resolver(Arc::new(OverrideResolver {
                overrides: self.overrides.clone(),
            }));
        }
        b
    }
}

/// Where the platform's trust roots are, when one file holds them all.
///
/// On Linux, reqwest's platform verifier (`rustls-platform-verifier`) verifies with webpki
/// against the roots `rustls-native-certs` loads: `SSL_CERT_FILE`/`SSL_CERT_DIR` when set,
/// otherwise the bundle file *and* every file of the certificate directory that
/// `openssl-probe` finds (on Debian, `/etc/ssl/certs/ca-certificates.crt` and
/// `/etc/ssl/certs`). On Debian-based images `update-ca-certificates` generates that bundle,
/// "a single-file of concatenated certificates", from the same collection it links into the
/// directory (Debian's update-ca-certificates(8),
/// <https://manpages.debian.org/unstable/ca-certificates/update-ca-certificates.8.en.html>), so
/// the bundle alone is the same set of roots, read in one file. Azure Functions' Linux images
/// are Debian 11/12 (the tag tables of <https://github.com/Azure/azure-functions-docker>).
/// With `SSL_CERT_FILE` or `SSL_CERT_DIR` set, or no bundle, nothing changes: the platform
/// verifier reads what it reads today.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SystemRoots {
    /// `SSL_CERT_FILE` or `SSL_CERT_DIR` is set: the platform verifier honours them.
    configured: bool,
    bundle: &'static str,
}

impl SystemRoots {
    /// Debian's (and Ubuntu's) bundle, written by `update-ca-certificates`.
    const DEBIAN_BUNDLE: &'static str = "/etc/ssl/certs/ca-certificates.crt";

    fn from_env() -> Self {
        let set = |n: &str| std::env::var_os(n).is_some_and(|v| !v.is_empty());
        Self {
            configured: set("SSL_CERT_FILE") || set("SSL_CERT_DIR"),
            bundle: Self::DEBIAN_BUNDLE,
        }
    }

    /// The bundle's certificates, or `None` to let the platform verifier read the store.
    fn bundle(&self) -> Option<Vec<reqwest::Certificate>> {
        if self.configured || !cfg!(target_os = "linux") {
            return None;
        }
        let pem = std::fs::read(self.bundle).ok()?;
        reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|certs| !certs.is_empty())
    }
}

/// The environment's proxies, as reqwest would use them without pins.
#[derive(Debug, Clone, Default)]
struct EnvProxies {
    https: Option<String>,
    http: Option<String>,
}

impl EnvProxies {
    fn from_env() -> Self {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        Self {
            https: var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]),
            http: var(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]),
        }
    }

    /// The proxy for `url`: none for a pinned host (it must reach the pinned address).
    fn for_url(&self, url: &url::Url, pins: &[HostOverride]) -> Option<String> {
        let host = url.host_str()?;
        if pins.iter().any(|p| p.matches(host)) {
            return None;
        }
        match url.scheme() {
            "https" => self.https.clone(),
            "http" => self.http.clone(),
            _ => None,
        }
    }
}

/// Resolves overridden names to their pinned address and everything else through the system.
struct OverrideResolver {
    overrides: Vec<HostOverride>,
}

impl reqwest::dns::Resolve for OverrideResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let hit = self
            .overrides
            .iter()
            .find(|o| o.matches(&host))
            .map(|o| o.addr);
        Box::pin(async move {
            if let Some(addr) = hit {
                let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(addr));
                return Ok(addrs);
            }
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let addrs: reqwest::dns::Addrs = Box::new(found.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_and_wildcard_overrides() {
        let o = TransportConfig::parse_overrides(
            "login.microsoftonline.com=127.0.0.1:8443, *.vault.azure.net=127.0.0.1:8443",
        )
        .unwrap();
        assert_eq!(o.len(), 2);
        assert!(o[0].matches("login.microsoftonline.com"));
        assert!(!o[0].matches("graph.microsoft.com"));
        assert!(o[1].matches("kv1.vault.azure.net"));
        assert!(!o[1].matches("vault.azure.net"));
        assert!(!o[1].matches("kv1.vault.azure.net.evil.com"));
    }

    /// Was: any pin switched the proxy off for every host.
    #[test]
    fn only_pinned_hosts_bypass_the_proxy() {
        let pins = TransportConfig::parse_overrides("*.vault.azure.net=10.0.0.5:443").unwrap();
        let env = EnvProxies {
            https: Some("http://proxy.corp:3128".into()),
            http: None,
        };
        let url = |u: &str| url::Url::parse(u).unwrap();
        assert_eq!(
            env.for_url(&url("https://kv1.vault.azure.net/secrets/x"), &pins),
            None
        );
        assert_eq!(
            env.for_url(&url("https://graph.microsoft.com/v1.0/x"), &pins)
                .as_deref(),
            Some("http://proxy.corp:3128")
        );
    }

    /// Was: with pins set, the CA file replaced the platform's roots. The one place that
    /// hands reqwest a complete root set passes the system bundle's roots with the extra CA.
    #[test]
    fn the_extra_ca_is_added_to_the_platform_roots() {
        let src = include_str!("transport.rs");
        let only = ["tls_certs", "_only("].concat();
        assert_eq!(src.matches(&only).count(), 1, "one call");
        let call = src
            .find(&[only.as_str(), "certs)"].concat())
            .expect("the call");
        let before = &src[..call];
        assert!(before.contains("SystemRoots::from_env().bundle()"));
        assert!(before.contains("certs.extend(extra"));
    }

    #[test]
    fn the_bundle_is_read_only_when_nothing_configures_the_store() {
        let bundle = |configured, bundle| SystemRoots { configured, bundle }.bundle();
        assert!(
            bundle(true, SystemRoots::DEBIAN_BUNDLE).is_none(),
            "SSL_CERT_* set"
        );
        assert!(bundle(false, "/nonexistent/ca-certificates.crt").is_none());
        let dir = std::env::temp_dir().join(format!("roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.crt");
        std::fs::write(&empty, "").unwrap();
        let empty: &'static str = Box::leak(empty.display().to_string().into_boxed_str());
        assert!(
            bundle(false, empty).is_none(),
            "an empty bundle is no bundle"
        );
        if cfg!(target_os = "linux") && std::path::Path::new(SystemRoots::DEBIAN_BUNDLE).exists() {
            let certs = bundle(false, SystemRoots::DEBIAN_BUNDLE).expect("the system bundle");
            assert!(certs.len() > 10, "{} roots", certs.len());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rejects_malformed_overrides() {
        assert!(HostOverride::parse("no-equals").is_err());
        assert!(HostOverride::parse("host=notanaddr").is_err());
        assert!(HostOverride::parse("=127.0.0.1:1").is_err());
    }
}

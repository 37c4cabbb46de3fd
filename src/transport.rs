//! The one HTTP transport every Azure client shares.
//!
//! Production uses the platform's trust store and real DNS. An operator (private endpoints, a
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

    pub fn build(&self) -> Result<reqwest::Client, TransportError> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout.unwrap_or(Duration::from_secs(60)))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(pem) = &self.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| TransportError::BadCa(e.to_string()))?;
            if certs.is_empty() {
                return Err(TransportError::BadCa("no certificate found".into()));
            }
            b = b.tls_certs_merge(certs);
        }
        if !self.overrides.is_empty() {
            let env = EnvProxies::from_env();
            let pins = self.overrides.clone();
            let proxy = reqwest::Proxy::custom(move |url| env.for_url(url, &pins))
                .no_proxy(reqwest::NoProxy::from_env());
            b = b.proxy(proxy).dns_resolver(Arc::new(OverrideResolver {
                overrides: self.overrides.clone(),
            }));
        }
        b.build().map_err(|e| TransportError::Build(e.to_string()))
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

    /// Was: with pins set, the CA file replaced the platform's roots.
    #[test]
    fn the_extra_ca_is_added_to_the_platform_roots() {
        let src = include_str!("transport.rs");
        let only = ["tls_certs", "_only("].concat();
        assert!(!src.contains(&only), "the platform roots stay trusted");
    }

    #[test]
    fn rejects_malformed_overrides() {
        assert!(HostOverride::parse("no-equals").is_err());
        assert!(HostOverride::parse("host=notanaddr").is_err());
        assert!(HostOverride::parse("=127.0.0.1:1").is_err());
    }
}

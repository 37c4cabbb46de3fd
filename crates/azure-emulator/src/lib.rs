//! azure-emulator: a local, in-memory Azure tenant spoken over the real wire protocols.
//!
//! One model of a tenant ([`model`]: applications and service principals with owners, managed
//! identities, vaults and secret versions, sites and app settings, API connections, Automation
//! variables, role assignments) behind the services the secret rotator talks to:
//! Entra v2 token endpoint and OpenID discovery ([`entra`]), the App Service managed-identity
//! endpoint, Microsoft Graph v1.0 applications ([`graph`]), Key Vault secrets ([`keyvault`]) and
//! ARM (sites, KV references, connections, Automation variables: [`arm`]). All Azure hosts are
//! served over HTTPS on one port with a CA made at start ([`tls`]), dispatched on the Host
//! header, so clients keep the real URLs and only override DNS and trust. The MI endpoint and
//! the control API ([`control`]: scenario, clock, faults, request log) are plain HTTP on a
//! second port. Tokens are HS256 JWTs ([`jwt`]) verified by every service against the
//! emulated clock ([`util::Clock`]). [`server`] holds the plumbing, fault injection and the
//! catch-panic backstop; [`faults`] the rules and the request log.
//!
//! What is emulated and not, and every decision on a point the contracts mark UNCONFIRMED, is
//! in `crates/azure-emulator/README.md`.

pub mod arm;
pub mod caller;
pub mod certificates;
pub mod control;
pub mod crypto;
pub mod entra;
pub mod faults;
pub mod graph;
pub mod jwt;
pub mod keycreds;
pub mod keyvault;
pub mod managed_apis;
pub mod model;
pub mod scenario;
pub mod server;
pub mod throttle;
pub mod tls;
pub mod util;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rand::Rng;
use uuid::Uuid;

pub use faults::{FaultAction, FaultRule, RequestRecord};
pub use scenario::Scenario;

use crate::faults::FaultEntry;
use crate::model::Tenant;
use crate::server::Shared;
use crate::util::{Clock, lock};

/// Errors of the emulator's library API.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("invalid scenario: {0}")]
    Scenario(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("could not write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid fault rule: {0}")]
    Fault(String),
}

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub bind: IpAddr,
    /// 0 = any free port.
    pub https_port: u16,
    /// 0 = any free port.
    pub http_port: u16,
    pub scenario: Scenario,
    /// Where `ca.pem` goes; None = a temp dir removed at shutdown.
    pub state_dir: Option<PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            https_port: 0,
            http_port: 0,
            scenario: Scenario::default(),
            state_dir: None,
        }
    }
}

/// One password credential as the oracle shows it (includes the secret text).
#[derive(Debug, Clone, PartialEq)]
pub struct PasswordRecord {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub hint: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub secret_text: String,
}

/// One completed version of a Key Vault certificate as the oracle shows it (no key material).
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateRecord {
    pub version: String,
    pub x5t_s256: String,
    /// SHA-1 of the DER, upper-case hex (the thumbprint App Service settings name).
    pub thumbprint: String,
    pub not_before: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub enabled: bool,
    /// The public certificate (DER): what may legitimately appear in outputs.
    pub cer: Vec<u8>,
}

/// A running emulator. Dropping it without [`Emulator::shutdown`] stops the servers too.
pub struct Emulator {
    shared: Arc<Shared>,
    https: SocketAddr,
    http: SocketAddr,
    ca: tls::Ca,
    ca_path: PathBuf,
    temp_dir: Option<PathBuf>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// In-process handle on the emulator's state (clock, scenario, faults, oracles).
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

pub(crate) fn load_scenario(shared: &Shared, s: &Scenario) -> Result<(), EmulatorError> {
    let base = s.now.unwrap_or_else(Utc::now);
    let tenant = Tenant::from_scenario(s, base, &shared.key)?;
    // Clock and state change together so the new state's times line up with the clock.
    let mut st = lock(&shared.state);
    shared.clock.reset(base);
    *st = tenant;
    Ok(())
}

pub(crate) fn add_fault(shared: &Shared, rule: FaultRule) -> u64 {
    let id = shared.next_fault.fetch_add(1, Ordering::Relaxed) + 1;
    lock(&shared.faults).push(FaultEntry::new(id, rule));
    id
}

/// Starts the emulator: makes the CA, binds both ports, loads the scenario.
pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
    let mut key = [0u8; 32];
    rand::rng().fill(&mut key);
    let base = config.scenario.now.unwrap_or_else(Utc::now);
    let tenant = Tenant::from_scenario(&config.scenario, base, &key)?;
    let shared = Arc::new(Shared {
        state: Mutex::new(tenant),
        clock: Clock::new(base),
        key,
        faults: Mutex::new(vec![]),
        next_fault: AtomicU64::new(0),
        log: Mutex::new(vec![]),
        seq: AtomicU64::new(0),
    });
    let ca = tls::Ca::generate()?;
    let tls_cfg = ca.server_config()?;
    let (dir, temp_dir) = match &config.state_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("azure-emulator-{}", util::hex32()));
            (d.clone(), Some(d))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| EmulatorError::Io {
        path: dir.clone(),
        source: e,
    })?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).map_err(|e| EmulatorError::Io {
        path: ca_path.clone(),
        source: e,
    })?;

    let https_addr = SocketAddr::new(config.bind, config.https_port);
    let http_addr = SocketAddr::new(config.bind, config.http_port);
    let https_l = tokio::net::TcpListener::bind(https_addr)
        .await
        .map_err(|e| EmulatorError::Bind {
            addr: https_addr,
            source: e,
        })?;
    let http_l = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|e| EmulatorError::Bind {
            addr: http_addr,
            source: e,
        })?;
    let https = https_l.local_addr().map_err(|e| EmulatorError::Bind {
        addr: https_addr,
        source: e,
    })?;
    let http = http_l.local_addr().map_err(|e| EmulatorError::Bind {
        addr: http_addr,
        source: e,
    })?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let tasks = vec![
        tokio::spawn(server::run_https(
            https_l,
            tls_cfg,
            shared.clone(),
            rx.clone(),
        )),
        tokio::spawn(server::run_http(http_l, shared.clone(), rx)),
    ];
    tracing::info!(%https, %http, ca = %ca_path.display(), "azure-emulator listening");
    Ok(Emulator {
        shared,
        https,
        http,
        ca,
        ca_path,
        temp_dir,
        stop,
        tasks,
    })
}

impl Emulator {
    /// All Azure hosts, dispatched on Host header.
    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    /// MI endpoint and control API.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    pub fn msi_endpoint(&self) -> String {
        format!("http://{}/msi/token", self.http)
    }

    pub fn identity_header(&self, managed_identity_name: &str) -> Option<String> {
        self.control().identity_header(managed_identity_name)
    }

    pub fn control_url(&self) -> String {
        format!("http://{}/_emulator", self.http)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    pub fn tenant_id(&self) -> Uuid {
        lock(&self.shared.state).tenant_id
    }

    pub fn subscription_id(&self) -> Uuid {
        lock(&self.shared.state).subscription_id
    }

    pub fn host_overrides(&self) -> Vec<(String, SocketAddr)> {
        tls::HOSTS
            .iter()
            .map(|h| (h.to_string(), self.https))
            .collect()
    }

    /// A leaf cert + key (PEM) signed by the emulator CA, for another local HTTPS server.
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
    ) -> Result<(String, String), EmulatorError> {
        self.ca.issue(dns_names)
    }

    pub fn control(&self) -> Control {
        Control {
            shared: self.shared.clone(),
        }
    }

    /// The JSON "ready" line the binary prints.
    pub fn ready_line(&self) -> serde_json::Value {
        let st = lock(&self.shared.state);
        let headers: serde_json::Map<String, serde_json::Value> = st
            .mis
            .iter()
            .map(|m| (m.name.clone(), serde_json::json!(m.header)))
            .collect();
        serde_json::json!({
            "ready": true,
            "https": self.https.to_string(),
            "http": self.http.to_string(),
            "msiEndpoint": self.msi_endpoint(),
            "identityHeaders": headers,
            "controlUrl": self.control_url(),
            "caPath": self.ca_path.display().to_string(),
            "tenantId": st.tenant_id,
            "subscriptionId": st.subscription_id,
            "hosts": tls::HOSTS,
        })
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(d) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(d) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Control {
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.shared.clock.advance(by)
    }

    pub fn set_replication_delay(&self, seconds: u64) {
        lock(&self.shared.state).replication_delay = seconds;
    }

    /// Replaces the whole state (and restarts the clock at the scenario's `now`).
    pub fn load_scenario(&self, s: Scenario) -> Result<(), EmulatorError> {
        load_scenario(&self.shared, &s)
    }

    /// Full dump (test oracle; includes secret values).
    pub fn state(&self) -> serde_json::Value {
        let now = self.now();
        lock(&self.shared.state).dump(now)
    }

    /// Adds a rule; panics never: an invalid rule is kept out and gets id 0.
    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        if let Err(e) = rule.validate() {
            tracing::warn!("fault rule rejected: {e}");
            return 0;
        }
        add_fault(&self.shared, rule)
    }

    /// Like `add_fault`, with the reason when the rule is invalid.
    pub fn try_add_fault(&self, rule: FaultRule) -> Result<u64, EmulatorError> {
        rule.validate().map_err(EmulatorError::Fault)?;
        Ok(add_fault(&self.shared, rule))
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Never any secret value in it.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// How many records the request log holds, without copying it (a test polling for the
    /// k-th request does so every millisecond).
    pub fn request_count(&self) -> usize {
        lock(&self.shared.log).len()
    }

    pub fn identity_header(&self, managed_identity_name: &str) -> Option<String> {
        lock(&self.shared.state)
            .mi_by_name(managed_identity_name)
            .map(|m| m.header.clone())
    }

    pub fn app_id_by_name(&self, display_name: &str) -> Option<Uuid> {
        lock(&self.shared.state)
            .apps
            .iter()
            .find(|a| a.display_name == display_name)
            .map(|a| a.app_id)
    }

    pub fn passwords(&self, app_id: Uuid) -> Vec<PasswordRecord> {
        lock(&self.shared.state)
            .app_by_app_id(app_id)
            .map(|a| {
                a.passwords
                    .iter()
                    .map(|p| PasswordRecord {
                        key_id: p.key_id,
                        display_name: p.display_name.clone(),
                        hint: p.hint.clone(),
                        start: p.start,
                        end: p.end,
                        secret_text: p.secret.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn secret_latest(
        &self,
        vault: &str,
        name: &str,
    ) -> Option<(String, String, BTreeMap<String, String>)> {
        let st = lock(&self.shared.state);
        let v = st.vaults.get(&vault.to_ascii_lowercase())?;
        let sv = v.secrets.get(&name.to_ascii_lowercase())?.versions.last()?;
        Some((sv.version.clone(), sv.value.clone(), sv.tags.clone()))
    }

    /// Every version of a secret, oldest first: (version, value). A certificate's secret (the
    /// PFX or PEM) has the certificate version's id: the oracle maps a Key Vault reference's
    /// resolved value to the certificate version behind it, and scans outputs for private keys.
    pub fn secret_versions(&self, vault: &str, name: &str) -> Vec<(String, String)> {
        let st = lock(&self.shared.state);
        st.vaults
            .get(&vault.to_ascii_lowercase())
            .and_then(|v| v.secrets.get(&name.to_ascii_lowercase()))
            .map(|e| {
                e.versions
                    .iter()
                    .map(|sv| (sv.version.clone(), sv.value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Soft-deletes a secret as a person would (`az keyvault secret delete`): it stays
    /// recoverable, and its name cannot be reused until it is recovered or purged. `false` when
    /// there is no such secret.
    pub fn soft_delete_secret(&self, vault: &str, name: &str) -> bool {
        let now = self.now();
        let mut st = lock(&self.shared.state);
        st.vaults
            .get_mut(&vault.to_ascii_lowercase())
            .and_then(|v| keyvault::soft_delete(v, name, now))
            .is_some()
    }

    /// Enables or disables the latest version of a secret (`az keyvault secret set-attributes
    /// --enabled`). `false` when there is no such secret.
    pub fn set_latest_enabled(&self, vault: &str, name: &str, enabled: bool) -> bool {
        let mut st = lock(&self.shared.state);
        let latest = st
            .vaults
            .get_mut(&vault.to_ascii_lowercase())
            .and_then(|v| v.secrets.get_mut(&name.to_ascii_lowercase()))
            .and_then(|e| e.versions.last_mut());
        match latest {
            Some(sv) => {
                sv.enabled = enabled;
                true
            }
            None => false,
        }
    }

    pub fn app_setting(&self, rg: &str, site: &str, name: &str) -> Option<String> {
        lock(&self.shared.state)
            .sites
            .get(&model::key(rg, site))?
            .settings
            .get(name)
            .cloned()
    }

    /// Removes one app setting as a person editing the site in the portal would (dev mode's
    /// demo moving a consumer off a secret). Returns false when there is no such setting.
    pub fn remove_app_setting(&self, rg: &str, site: &str, name: &str) -> bool {
        lock(&self.shared.state)
            .sites
            .get_mut(&model::key(rg, site))
            .is_some_and(|s| {
                s.refs.remove(name);
                s.settings.remove(name).is_some()
            })
    }

    /// A site's whole app-settings map (raw values), for oracles that check nothing else on
    /// the site changed.
    pub fn app_settings(&self, rg: &str, site: &str) -> Option<BTreeMap<String, String>> {
        lock(&self.shared.state)
            .sites
            .get(&model::key(rg, site))
            .map(|s| s.settings.clone())
    }

    /// What the app sees: the cached Key Vault resolution (re-read after 24 h of emulated time).
    pub fn app_setting_effective(&self, rg: &str, site: &str, name: &str) -> Option<String> {
        let now = self.now();
        arm::effective(&mut lock(&self.shared.state), rg, site, name, now)
    }

    pub fn connection_parameter(&self, rg: &str, name: &str, param: &str) -> Option<String> {
        let st = lock(&self.shared.state);
        let c = st.connections.get(&model::key(rg, name))?;
        c.parameter_values
            .get(param)
            .or_else(|| c.non_secret.get(param))
            .cloned()
    }

    /// Sets one parameter of a connection as a person editing it in the portal would (tests of
    /// drift the rotator cannot read back). Returns false when there is no such connection.
    pub fn set_connection_parameter(&self, rg: &str, name: &str, param: &str, value: &str) -> bool {
        let mut st = lock(&self.shared.state);
        match st.connections.get_mut(&model::key(rg, name)) {
            Some(c) => {
                c.parameter_values.insert(param.into(), value.into());
                true
            }
            None => false,
        }
    }

    pub fn connection_status(&self, rg: &str, name: &str) -> Option<String> {
        let now = self.now();
        let st = lock(&self.shared.state);
        let c = st.connections.get(&model::key(rg, name))?;
        Some(arm::connection_status(&st, c, now).0)
    }

    /// The decoded string value (the stored JSON text when it is not a JSON string).
    pub fn automation_variable(&self, rg: &str, account: &str, name: &str) -> Option<String> {
        let st = lock(&self.shared.state);
        let raw = st
            .automation
            .get(&model::key(rg, account))?
            .variables
            .get(&name.to_ascii_lowercase())?
            .value
            .clone()?;
        Some(match serde_json::from_str::<serde_json::Value>(&raw) {
            Ok(serde_json::Value::String(s)) => s,
            _ => raw,
        })
    }

    /// The application's key credentials as the tenant holds them: (keyId, `x5t#S256` of the
    /// certificate). The oracle for "no other key on the application is lost".
    pub fn key_credentials(&self, app_id: Uuid) -> Vec<(Uuid, String)> {
        lock(&self.shared.state)
            .app_by_app_id(app_id)
            .map(|a| {
                a.certificates
                    .iter()
                    .map(|k| (k.key_id, crate::crypto::x5t_s256(&k.der)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The application's key credentials with their validity and display names (no key
    /// material): the oracle of "the key a consumer uses is on the application and valid".
    pub fn key_records(&self, app_id: Uuid) -> Vec<keycreds::KeyRecord> {
        lock(&self.shared.state)
            .app_by_app_id(app_id)
            .map(keycreds::records)
            .unwrap_or_default()
    }

    /// Every write that changed an application's keyCredentials since the scenario loaded, in
    /// order, whatever the writer was answered.
    pub fn key_writes(&self) -> Vec<keycreds::KeyWrite> {
        lock(&self.shared.state).key_writes.clone()
    }

    /// A Key Vault certificate's completed versions, oldest first: (version, `x5t#S256`, SHA-1
    /// thumbprint upper-case hex, not before, expires, enabled). Empty when there is none.
    pub fn certificate_versions(&self, vault: &str, name: &str) -> Vec<CertificateRecord> {
        let st = lock(&self.shared.state);
        let Some(e) = st
            .vaults
            .get(&vault.to_ascii_lowercase())
            .and_then(|v| v.certificates.get(&name.to_ascii_lowercase()))
        else {
            return vec![];
        };
        e.versions
            .iter()
            .map(|cv| CertificateRecord {
                version: cv.version.clone(),
                x5t_s256: crypto::x5t_s256(&cv.cer),
                thumbprint: crypto::sha1_hex_upper(&cv.cer),
                not_before: DateTime::from_timestamp(cv.nbf, 0).unwrap_or_default(),
                expires: DateTime::from_timestamp(cv.exp, 0).unwrap_or_default(),
                enabled: cv.enabled,
                cer: cv.cer.clone(),
            })
            .collect()
    }

    /// When a certificate's pending operation completes (None: no operation in progress), as
    /// of the last Key Vault request to its vault (operations complete on the next request).
    pub fn certificate_pending_due(&self, vault: &str, name: &str) -> Option<DateTime<Utc>> {
        let st = lock(&self.shared.state);
        st.vaults
            .get(&vault.to_ascii_lowercase())?
            .certificates
            .get(&name.to_ascii_lowercase())?
            .pending
            .as_ref()
            .map(|p| p.due)
    }

    /// The token endpoint's verdict on a client assertion for `app_id`, now: Ok or the AADSTS
    /// code (the tenant segment is the tenant id).
    pub fn check_client_assertion(&self, app_id: Uuid, assertion: &str) -> Result<(), u64> {
        let now = self.now();
        let st = lock(&self.shared.state);
        let app = st.app_by_app_id(app_id).ok_or(700016u64)?;
        let tenant = st.tenant_id.to_string();
        crate::keycreds::check_assertion(&st, app, assertion, &tenant, now).map_err(|(c, _)| c)
    }

    /// The token endpoint's verdict on a client secret, now: Ok or the AADSTS code.
    pub fn check_client_secret(&self, app_id: Uuid, secret: &str) -> Result<(), u64> {
        let now = self.now();
        lock(&self.shared.state).check_secret(app_id, secret, now)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_thread_safe() {
        fn send_sync<T: Send + Sync + Clone>() {}
        fn send<T: Send>() {}
        send_sync::<super::Control>();
        send::<super::Emulator>();
    }
}

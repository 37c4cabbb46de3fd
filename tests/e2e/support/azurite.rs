//! Test helper: a private Azurite blob service for one test — `secret_rotator::dev::azurite`
//! (HTTPS with a certificate from the emulator's CA, OAuth basic, the account taken from the
//! production host name), with the panicking API tests want.
//!
//! In basic OAuth mode Azurite checks the token's `iss` (must start with
//! `https://sts.windows.net/`), `aud` and `nbf`/`exp` against its real clock; the emulator
//! stamps tokens on the wall clock, so tests may move the emulated clock freely.
//!
//! Azurite comes from the root `package.json` (`npm ci`); when it is missing the helper panics
//! saying so — storage tests never skip silently.
//!
//! [`Azurite::shared`] starts one process for several worlds (each its own account): a node
//! process costs about a second of CPU to start, most of what a short world costs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use azure_emulator::Emulator;

/// One account on an Azurite process (the process goes when its last account is dropped).
pub struct Azurite {
    /// Kept for its lifetime: the process stops when no account needs it.
    _process: Arc<Process>,
    pub addr: SocketAddr,
    pub account: String,
    /// The CA that issued the process's certificate, when it is not the world's emulator's
    /// (a shared process): the world's transport trusts it too.
    pub foreign_ca: Option<String>,
}

struct Process {
    /// Stops the node process when dropped.
    _azurite: secret_rotator::dev::azurite::Azurite,
    dir: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Azurite {
    /// The production host name of the account (what the transport must map to [`Self::addr`]).
    pub fn host(&self) -> String {
        format!("{}.blob.core.windows.net", self.account)
    }

    /// `(host, addr)` for `TestEmulator::transport_config`.
    pub fn host_override(&self) -> (String, SocketAddr) {
        (self.host(), self.addr)
    }

    /// Starts Azurite for `account` (3-24 lowercase letters and digits) on a free port.
    pub fn start(emulator: &Emulator, account: &str) -> Self {
        let mut one = Self::start_accounts(emulator, &[account.to_string()]);
        let mut only = one.pop().expect("one account");
        only.foreign_ca = None;
        only
    }

    /// One Azurite process for `n` worlds, each its own (random) account; its certificate comes
    /// from `issuer`'s CA (an emulator of none of the worlds), which each world's transport
    /// trusts next to its own emulator's.
    pub fn shared(issuer: &Emulator, n: usize) -> Vec<Self> {
        let accounts: Vec<String> = (0..n)
            .map(|_| format!("st{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
            .collect();
        Self::start_accounts(issuer, &accounts)
    }

    /// A process serving `accounts`, one view per account (in order), each naming the CA.
    fn start_accounts(emulator: &Emulator, accounts: &[String]) -> Vec<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("azurite-{}", uuid::Uuid::new_v4()));
        let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
        let azurite =
            secret_rotator::dev::azurite::Azurite::start_accounts(&root, emulator, &names, &dir)
                .unwrap_or_else(|e| panic!("{e:#}"));
        let addr = azurite.addr;
        let inner = Arc::new(Process {
            _azurite: azurite,
            dir,
        });
        accounts
            .iter()
            .map(|account| Self {
                _process: inner.clone(),
                addr,
                account: account.clone(),
                foreign_ca: Some(emulator.ca_pem().to_string()),
            })
            .collect()
    }
}

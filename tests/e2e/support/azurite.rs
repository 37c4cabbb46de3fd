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

use std::net::SocketAddr;
use std::path::PathBuf;

use azure_emulator::Emulator;

pub struct Azurite {
    inner: secret_rotator::dev::azurite::Azurite,
    pub addr: SocketAddr,
    pub account: String,
    dir: PathBuf,
}

impl Azurite {
    /// The production host name of the account (what the transport must map to [`Self::addr`]).
    pub fn host(&self) -> String {
        self.inner.host()
    }

    /// `(host, addr)` for `TestEmulator::transport_config`.
    pub fn host_override(&self) -> (String, SocketAddr) {
        (self.host(), self.addr)
    }

    /// Starts Azurite for `account` (3-24 lowercase letters and digits) on a free port.
    pub fn start(emulator: &Emulator, account: &str) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("azurite-{}", uuid::Uuid::new_v4()));
        let inner = secret_rotator::dev::azurite::Azurite::start(&root, emulator, account, &dir)
            .unwrap_or_else(|e| panic!("{e:#}"));
        Self {
            addr: inner.addr,
            account: inner.account.clone(),
            inner,
            dir,
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

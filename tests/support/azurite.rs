//! Test helper: a private Azurite blob service for one test, over HTTPS with a certificate from
//! the emulator's CA and OAuth (`--oauth basic`) so requests carry the emulator's bearer tokens
//! exactly as production carries Entra's.
//!
//! Azurite takes the storage account from the first label of a production-style host name
//! (`{account}.blob.core.windows.net`, checked in its `extractStoragePartsFromPath`), so the
//! test's transport maps that host to Azurite's port and the client uses the real URL. The
//! account is declared through `AZURITE_ACCOUNTS`. In basic OAuth mode Azurite checks the
//! token's `iss` (must start with `https://sts.windows.net/`), `aud`
//! (`https://storage.azure.com` among others) and `nbf`/`exp` against its real clock, so the
//! emulator's scenario must not move its clock far from real time in storage tests.
//!
//! Azurite comes from the root `package.json` (`npm ci`); when it is missing the helper panics
//! saying so — storage tests never skip silently. No `--loose` and no
//! `--skipApiVersionCheck`: the client's x-ms-version is one Azurite 3.35.0 knows.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azure_emulator::Emulator;

pub struct Azurite {
    child: Child,
    pub addr: SocketAddr,
    pub account: String,
    dir: PathBuf,
}

impl Azurite {
    /// The production host name of the account (what the transport must map to [`Self::addr`]).
    pub fn host(&self) -> String {
        format!("{}.blob.core.windows.net", self.account)
    }

    /// `(host, addr)` for [`crate::emulator::TestEmulator::transport_config`].
    pub fn host_override(&self) -> (String, SocketAddr) {
        (self.host(), self.addr)
    }

    /// Starts Azurite for `account` (3-24 lowercase letters and digits) on a free port.
    pub fn start(emulator: &Emulator, account: &str) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let bin = root.join("node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "Azurite is not installed: run `npm ci` in {} (storage tests need it)",
            root.display()
        );
        let dir = std::env::temp_dir().join(format!("azurite-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let host = format!("{account}.blob.core.windows.net");
        let (cert, key) = emulator
            .issue_server_cert(&[host])
            .expect("emulator issues a server certificate");
        std::fs::write(dir.join("cert.pem"), cert).expect("write cert");
        std::fs::write(dir.join("key.pem"), key).expect("write key");
        // Any base64 key: OAuth is what the tests use, the key only declares the account.
        let account_key = "dGVzdC1rZXktbm90LXVzZWQtZm9yLW9hdXRoLWJhc2ljLW1vZGU=";
        let mut child = Command::new(&bin)
            .current_dir(&dir)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--oauth",
                "basic",
            ])
            .arg("--cert")
            .arg(dir.join("cert.pem"))
            .arg("--key")
            .arg(dir.join("key.pem"))
            .arg("--location")
            .arg(dir.join("data"))
            .args(["--disableTelemetry", "--silent"])
            .env("AZURITE_ACCOUNTS", format!("{account}:{account_key}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e} (run `npm ci`)", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "Azurite Blob service successfully listens on https://127.0.0.1:PORT"
                if let Some(url) = line.split("listens on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(u) => break u,
                Err(_) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("Azurite exited before listening: {status}");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("Azurite did not report its port within 30 s");
                }
            }
        };
        let addr: SocketAddr = url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|_| panic!("Azurite reported an unexpected address: {url}"));
        Self {
            child,
            addr,
            account: account.to_string(),
            dir,
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

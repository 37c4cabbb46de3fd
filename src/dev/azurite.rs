//! Azurite (npm's Azure Storage emulator) as the rotator's storage account, for dev mode.
//!
//! Served over HTTPS with a certificate from the Azure emulator's CA and with OAuth (`--oauth
//! basic`), so the rotator reaches it exactly as it reaches a real account: at
//! `https://{account}.blob.core.windows.net` (redirected at the transport), with bearer tokens.
//! Azurite takes the account from the first label of that host name.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Azurite {
    child: Child,
    pub addr: SocketAddr,
    pub account: String,
    dir: PathBuf,
}

impl Azurite {
    pub fn host(&self) -> String {
        format!("{}.blob.core.windows.net", self.account)
    }

    /// Starts `node_modules/.bin/azurite-blob` under `repo` for `account` on a free port.
    pub fn start(
        repo: &Path,
        emulator: &azure_emulator::Emulator,
        account: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_accounts(repo, emulator, &[account], dir)
    }

    /// [`Azurite::start`] serving several accounts (one certificate names each account's host):
    /// tests whose worlds can share one process. [`Azurite::account`] is the first.
    pub fn start_accounts(
        repo: &Path,
        emulator: &azure_emulator::Emulator,
        accounts: &[&str],
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let Some(account) = accounts.first() else {
            bail!("Azurite needs at least one account");
        };
        let bin = repo.join("node_modules/.bin/azurite-blob");
        if !bin.exists() {
            bail!(
                "Azurite is not installed (no {}): run `npm ci` in {} — scripts/dev does it for you",
                bin.display(),
                repo.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        write_certificate(emulator, accounts, dir)?;
        let mut child = spawn(&bin, accounts, dir)?;
        let addr = wait_for_address(&mut child)?;
        Ok(Self {
            child,
            addr,
            account: account.to_string(),
            dir: dir.to_path_buf(),
        })
    }
}

/// `cert.pem` and `key.pem` in `dir`: issued by the emulator's CA for every account's host.
fn write_certificate(
    emulator: &azure_emulator::Emulator,
    accounts: &[&str],
    dir: &Path,
) -> anyhow::Result<()> {
    let hosts: Vec<String> = accounts
        .iter()
        .map(|a| format!("{a}.blob.core.windows.net"))
        .collect();
    let (cert, key) = emulator
        .issue_server_cert(&hosts)
        .context("the emulator could not issue Azurite's certificate")?;
    std::fs::write(dir.join("cert.pem"), cert)?;
    std::fs::write(dir.join("key.pem"), key)?;
    Ok(())
}

/// Starts Azurite over HTTPS with OAuth on a free port, its stdout piped (it reports the port).
fn spawn(bin: &Path, accounts: &[&str], dir: &Path) -> anyhow::Result<Child> {
    // Any base64 key: the account is reached with OAuth, the key only declares it.
    let key = "ZGV2LW1vZGUta2V5LW5vdC11c2VkLXdpdGgtb2F1dGg=";
    Command::new(bin)
        .current_dir(dir)
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
        // In memory (Azurite refuses `--location` with it): nothing outlives the process
        // that started it, and persisting to disk made Azurite the largest CPU consumer of
        // the 1,000-credential benchmark.
        .args(["--inMemoryPersistence", "--disableTelemetry", "--silent"])
        .env(
            "AZURITE_ACCOUNTS",
            accounts
                .iter()
                .map(|a| format!("{a}:{key}"))
                .collect::<Vec<_>>()
                .join(";"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("could not start {}", bin.display()))
}

/// The address Azurite reports it listens on (within 30 s; killed if it does not say).
fn wait_for_address(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let stdout = child.stdout.take().context("Azurite's stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split("listens on ").nth(1) {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(u) => break u,
            Err(_) if Instant::now() < deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("Azurite exited before listening: {status}");
                }
            }
            Err(_) => {
                let _ = child.kill();
                bail!("Azurite did not report its port within 30 s");
            }
        }
    };
    url.trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("Azurite reported an unexpected address: {url}"))
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

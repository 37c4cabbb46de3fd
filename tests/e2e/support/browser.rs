//! Headless Chromium for tests: run Debian's `/usr/bin/chromium` on a local HTML file and get
//! back a screenshot (decoded to RGBA pixels) or the DOM after parsing, plus what the page tried
//! to fetch from the network.
//!
//! Every run gets a fresh profile directory and points Chromium at a loopback "proxy" that only
//! records what arrives and answers 502, so a page that reaches for the network is seen (and the
//! test never depends on, or sends anything to, the outside world). A missing Chromium is an
//! error that says how to install it: a browser test that silently skips proves nothing.
//!
//! Also here: [`TempDir`] (std only, removed on drop) and the pixel helpers
//! ([`Image::components`]) the tests use to find solid colour blocks in a screenshot.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where Debian's `chromium` package puts the browser; `CHROMIUM` overrides it.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// A run that takes longer than this is killed and reported as a failure.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// The path of the browser to use (`CHROMIUM` or [`DEFAULT_CHROMIUM`]), or an error telling
/// how to install it.
pub fn chromium_path() -> Result<PathBuf, String> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
    locate(&path)
}

/// `path` if it is a file, else the error a test fails with.
pub fn locate(path: &Path) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(format!(
            "headless Chromium not found at {}: the status page browser tests need it. Install \
             it with `apt-get update && apt-get install -y chromium` (scripts/test does this on a \
             fresh machine), or point CHROMIUM at another Chromium binary",
            path.display()
        ))
    }
}

/// A directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "secret-rotator-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback listener standing in for an HTTP proxy: records the request line of everything
/// Chromium sends through it (`GET http://…`, `CONNECT host:443`) and answers 502.
pub struct NetworkTrap {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NetworkTrap {
    pub fn start() -> NetworkTrap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback trap");
        let port = listener.local_addr().expect("trap address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let _ = BufReader::new(&conn).read_line(&mut line);
                let line = line.trim().to_string();
                seen2.lock().unwrap().push(if line.is_empty() {
                    "(connection without a request line)".into()
                } else {
                    line
                });
                let _ = conn.write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        NetworkTrap {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The value for Chromium's `--proxy-server`.
    pub fn proxy_arg(&self) -> String {
        format!("--proxy-server=http://127.0.0.1:{}", self.port)
    }

    /// Request lines received so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for NetworkTrap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Hosts Debian's Chromium contacts by itself whatever the page (its wrapper in
/// `/etc/chromium.d/` sets Google API keys and `--enable-remote-extensions`, which bring sign-in
/// and extension update checks the command-line switches do not turn off). Requests to these
/// are the browser's own; anything else reaching the trap was asked for by the page.
pub const BROWSER_BACKGROUND_HOSTS: &[&str] = &[
    "accounts.google.com",
    "clients2.google.com",
    "update.googleapis.com",
];

/// The host a proxied request line names (None if it is not a request line; such a connection
/// counts as the page's): `CONNECT host:443 …` or `GET http://host/… …`.
pub fn request_host(line: &str) -> Option<&str> {
    let mut parts = line.split_whitespace();
    let (_method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/") {
        return None;
    }
    let authority = match target.split_once("://") {
        Some((_, rest)) => rest.split('/').next()?,
        None => target,
    };
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

/// What one Chromium run produced.
pub struct RunOutput {
    pub stdout: String,
    /// Request lines that reached the network trap during the run.
    pub network: Vec<String>,
    pub elapsed: Duration,
}

impl RunOutput {
    /// Requests that reached the trap other than the browser's own background traffic.
    pub fn page_requests(&self) -> Vec<&str> {
        self.network
            .iter()
            .map(String::as_str)
            .filter(|l| !request_host(l).is_some_and(|h| BROWSER_BACKGROUND_HOSTS.contains(&h)))
            .collect()
    }
}

/// Runs Chromium headless on `html` with `mode_args` (e.g. `--screenshot=…` or `--dump-dom`).
pub fn run_chromium(html: &Path, mode_args: &[String]) -> Result<RunOutput, String> {
    let chromium = chromium_path()?;
    let profile = TempDir::new("chromium-profile");
    let trap = NetworkTrap::start();
    let url = format!("file://{}", html.display());
    let mut cmd = Command::new(&chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        // Colours are compared exactly; keep the output in plain sRGB whatever the machine has.
        "--force-color-profile=srgb",
        "--hide-scrollbars",
        // Quieten the browser's own background traffic (network time, extension and component
        // updates, sign-in), so what reaches the trap is what the page asked for.
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-component-extensions-with-background-pages",
        "--disable-client-side-phishing-detection",
        "--disable-domain-reliability",
        "--metrics-recording-only",
        "--disable-features=NetworkTimeServiceQuerying,Translate,MediaRouter,OptimizationHints",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(trap.proxy_arg())
    // Chromium bypasses proxies for loopback by default; `<-loopback>` removes that rule so even
    // a page that fetches from localhost shows up in the trap.
    .arg("--proxy-bypass-list=<-loopback>")
    .args(mode_args)
    .arg(&url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // Own process group, so a timeout kills the renderer and zygote children too.
    .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
    let pid = child.id();
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > RUN_TIMEOUT => {
                kill_group(pid);
                let _ = child.wait();
                return Err(format!(
                    "chromium did not finish within {RUN_TIMEOUT:?}; stderr: {}",
                    tail(&stderr.join().unwrap_or_default())
                ));
            }
            // Waiting for a child process, not for time to pass: poll at a short interval.
            Ok(None) => std::thread::sleep(Duration::from_millis(25)),
            Err(e) => return Err(format!("waiting for chromium: {e}")),
        }
    };
    // Any helper process still alive belongs to this run only.
    kill_group(pid);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "chromium exited with {status}; stderr: {}",
            tail(&stderr)
        ));
    }
    Ok(RunOutput {
        stdout,
        network: trap.seen(),
        elapsed: started.elapsed(),
    })
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Takes a 1280×800 screenshot of `html` and decodes it.
pub fn screenshot(html: &Path, png_out: &Path) -> Result<(Image, RunOutput), String> {
    let run = run_chromium(html, &[format!("--screenshot={}", png_out.display())])?;
    let bytes = std::fs::read(png_out)
        .map_err(|e| format!("chromium wrote no screenshot at {}: {e}", png_out.display()))?;
    Ok((Image::decode(&bytes)?, run))
}

/// The serialized DOM after parsing (and scripts, if any).
pub fn dump_dom(html: &Path) -> Result<(String, RunOutput), String> {
    let run = run_chromium(html, &["--dump-dom".to_string()])?;
    Ok((run.stdout.clone(), run))
}

/// An RGBA8 picture.
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

/// A 4-connected block of pixels of one colour: its bounding box and pixel count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
    pub pixels: usize,
}

impl Component {
    pub fn width(&self) -> usize {
        self.x1 - self.x0 + 1
    }
    pub fn height(&self) -> usize {
        self.y1 - self.y0 + 1
    }
    /// Share of the bounding box the block fills (1.0 for a rectangle).
    pub fn solidity(&self) -> f64 {
        self.pixels as f64 / (self.width() * self.height()) as f64
    }
    pub fn center_y(&self) -> usize {
        (self.y0 + self.y1) / 2
    }
}

impl Image {
    pub fn decode(bytes: &[u8]) -> Result<Image, String> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        // Palette/grey/16-bit all become 8-bit RGB(A), so one code path reads them.
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder
            .read_info()
            .map_err(|e| format!("screenshot is not a PNG: {e}"))?;
        let size = reader
            .output_buffer_size()
            .ok_or("screenshot PNG is too large to decode")?;
        let mut buf = vec![0; size];
        let info = reader
            .next_frame(&mut buf)
            .map_err(|e| format!("screenshot PNG is corrupt: {e}"))?;
        buf.truncate(info.buffer_size());
        let (w, h) = (info.width as usize, info.height as usize);
        let rgba = match info.color_type {
            png::ColorType::Rgba => buf,
            png::ColorType::Rgb => buf
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect(),
            png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g, 255]).collect(),
            png::ColorType::GrayscaleAlpha => buf
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
            other => {
                return Err(format!(
                    "unexpected PNG colour type {other:?} after expansion"
                ));
            }
        };
        if rgba.len() != w * h * 4 {
            return Err(format!(
                "PNG data is {} bytes, expected {}",
                rgba.len(),
                w * h * 4
            ));
        }
        Ok(Image {
            width: w,
            height: h,
            rgba,
        })
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 4;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }

    /// How many distinct RGB colours the picture holds.
    pub fn distinct_colours(&self) -> usize {
        let mut seen: Vec<u32> = self
            .rgba
            .chunks_exact(4)
            .map(|p| u32::from_be_bytes([0, p[0], p[1], p[2]]))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// Every 4-connected block of pixels within `tolerance` (per channel) of `rgb`, top to
    /// bottom, left to right.
    pub fn components(&self, rgb: [u8; 3], tolerance: u8) -> Vec<Component> {
        let near = |x: usize, y: usize| {
            let p = self.pixel(x, y);
            (0..3).all(|i| p[i].abs_diff(rgb[i]) <= tolerance)
        };
        let mut visited = vec![false; self.width * self.height];
        let mut out = Vec::new();
        for y in 0..self.height {
            for x in 0..self.width {
                if visited[y * self.width + x] || !near(x, y) {
                    continue;
                }
                let mut c = Component {
                    x0: x,
                    y0: y,
                    x1: x,
                    y1: y,
                    pixels: 0,
                };
                let mut queue = VecDeque::from([(x, y)]);
                visited[y * self.width + x] = true;
                while let Some((px, py)) = queue.pop_front() {
                    c.pixels += 1;
                    c.x0 = c.x0.min(px);
                    c.x1 = c.x1.max(px);
                    c.y0 = c.y0.min(py);
                    c.y1 = c.y1.max(py);
                    let mut push = |nx: usize, ny: usize| {
                        if !visited[ny * self.width + nx] && near(nx, ny) {
                            visited[ny * self.width + nx] = true;
                            queue.push_back((nx, ny));
                        }
                    };
                    if px > 0 {
                        push(px - 1, py);
                    }
                    if px + 1 < self.width {
                        push(px + 1, py);
                    }
                    if py > 0 {
                        push(px, py - 1);
                    }
                    if py + 1 < self.height {
                        push(px, py + 1);
                    }
                }
                out.push(c);
            }
        }
        out
    }
}

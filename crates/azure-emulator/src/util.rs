//! Small shared helpers: the emulated clock, HMAC-SHA256 and base64url, random ids, JSON time
//! formats, glob matching for RBAC actions and the query-string parser.
//!
//! Kept dependency-free (sha2 + base64 only) so every service module can use them.

use std::sync::Mutex;
use std::time::Instant;

use base64::Engine;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};

/// Emulated time: a base instant, plus real time elapsed since the base was set, plus advances.
pub struct Clock {
    inner: Mutex<ClockInner>,
}

struct ClockInner {
    base: DateTime<Utc>,
    started: Instant,
    advanced: Duration,
}

impl Clock {
    pub fn new(base: DateTime<Utc>) -> Self {
        Self {
            inner: Mutex::new(ClockInner {
                base,
                started: Instant::now(),
                advanced: Duration::zero(),
            }),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let c = lock(&self.inner);
        let elapsed = Duration::from_std(c.started.elapsed()).unwrap_or_else(|_| Duration::zero());
        c.base + elapsed + c.advanced
    }

    pub fn advance(&self, by: Duration) {
        let mut c = lock(&self.inner);
        c.advanced += by;
    }

    /// Restarts the clock at `base` (scenario load).
    pub fn reset(&self, base: DateTime<Utc>) {
        let mut c = lock(&self.inner);
        c.base = base;
        c.started = Instant::now();
        c.advanced = Duration::zero();
    }
}

/// Locks a mutex, recovering from poisoning: a panicking handler (caught by the backstop) must
/// not make the whole emulator unusable.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const B: usize = 64;
    let mut k = [0u8; B];
    if key.len() > B {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; B];
    let mut opad = [0x5cu8; B];
    for i in 0..B {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

pub fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

pub fn hex32() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn sha_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

/// A secret text shaped like Entra's: 40 characters, `~` in position 4 (the real ones look
/// like `eGk8Q~...`).
pub fn secret_text() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    let mut rng = rand::rng();
    let mut s: String = (0..40)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    s.replace_range(4..5, "~");
    s
}

/// Graph style: `2025-01-15T02:00:00Z`.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// ARM style: `2025-01-15T02:00:03.3000000Z` (7 fraction digits, as .NET writes them).
pub fn iso7(t: DateTime<Utc>) -> String {
    format!(
        "{}{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S."),
        t.timestamp_subsec_nanos() / 100
    )
}

/// Case-insensitive glob with `*` only (RBAC action patterns).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let t = text.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == t;
    }
    let mut pos = 0usize;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !t.starts_with(part) {
                return false;
            }
            pos = part.len();
        } else if i == parts.len() - 1 {
            return t.len() >= pos + part.len() && t[pos..].ends_with(part);
        } else if let Some(idx) = t[pos..].find(part) {
            pos += idx + part.len();
        } else {
            return false;
        }
    }
    true
}

/// Parses a query string into decoded pairs (order kept, repeated keys kept).
pub fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    match q {
        Some(q) => url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        None => Vec::new(),
    }
}

/// Decodes `%XX` escapes in a URL path (not `+`, which is literal in paths). Invalid escapes
/// and non-UTF-8 results are kept as they came.
pub fn percent_decode(p: &str) -> String {
    if !p.contains('%') {
        return p.to_string();
    }
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| p.to_string())
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn glob_works() {
        assert!(glob_match(
            "Microsoft.Web/sites/*",
            "microsoft.web/sites/config/write"
        ));
        assert!(glob_match("*/read", "Microsoft.Web/sites/read"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match(
            "*/read",
            "Microsoft.Web/sites/config/list/action"
        ));
        assert!(glob_match(
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/read"
        ));
        assert!(!glob_match(
            "Microsoft.Web/connections/*",
            "Microsoft.Web/sites/read"
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("/v1.0/applications(appId=%27ab%27)"),
            "/v1.0/applications(appId='ab')"
        );
        assert_eq!(percent_decode("/a%2"), "/a%2");
        assert_eq!(percent_decode("/a%zz+b"), "/a%zz+b");
    }

    #[test]
    fn secret_text_shape() {
        let s = secret_text();
        assert_eq!(s.len(), 40);
        assert_eq!(&s[4..5], "~");
    }
}

//! The asymmetric cryptography behind Key Vault certificates and keys and behind Entra's
//! certificate credentials: key generation (RSA 2048/3072/4096, EC P-256), self-signed X.509
//! certificates (rcgen), the certificate's secret as PKCS#12 or PEM (p12-keystore), Key
//! Vault's `sign` over a caller's digest, and JWS (RS/PS/ES) verification against a DER
//! certificate (x509-parser for the public key). Thumbprints: `x5t` is base64url SHA-1 of the
//! DER certificate, `x5t#S256` base64url SHA-256 (RFC 7515 sections 4.1.7 and 4.1.8).
//!
//! Private keys stay in [`PrivateKey`], whose Debug prints no key material.

use aws_lc_rs::digest;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{self, EcdsaKeyPair, UnparsedPublicKey};
use chrono::{DateTime, Utc};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::util::{b64url, b64url_decode};

/// Key types Key Vault certificates offer that the emulator makes (`JsonWebKeyType`, spec
/// `certificates.json` `KeyProperties.kty`; `-HSM` variants need a Premium vault: not emulated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa(u32),
    EcP256,
}

impl KeyKind {
    pub fn kty(self) -> &'static str {
        match self {
            KeyKind::Rsa(_) => "RSA",
            KeyKind::EcP256 => "EC",
        }
    }
}

/// A private key held by the emulated vault. No Debug of the material: a printed tenant
/// must not print keys.
#[derive(Clone)]
pub struct PrivateKey {
    pub kind: KeyKind,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.kind)
    }
}

/// Signature algorithms of Key Vault's `sign` (`JsonWebKeySignatureAlgorithm`, spec
/// `keys.json`) that the emulator implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignAlg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
}

impl SignAlg {
    pub fn parse(s: &str) -> Option<SignAlg> {
        Some(match s {
            "RS256" => SignAlg::Rs256,
            "RS384" => SignAlg::Rs384,
            "RS512" => SignAlg::Rs512,
            "PS256" => SignAlg::Ps256,
            "PS384" => SignAlg::Ps384,
            "PS512" => SignAlg::Ps512,
            "ES256" => SignAlg::Es256,
            _ => return None,
        })
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            SignAlg::Rs256 | SignAlg::Ps256 | SignAlg::Es256 => &digest::SHA256,
            SignAlg::Rs384 | SignAlg::Ps384 => &digest::SHA384,
            SignAlg::Rs512 | SignAlg::Ps512 => &digest::SHA512,
        }
    }

    /// The digest length `sign` expects for this algorithm.
    pub fn digest_len(self) -> usize {
        self.digest_alg().output_len()
    }

    fn fits(self, kind: KeyKind) -> bool {
        matches!(
            (self, kind),
            (SignAlg::Es256, KeyKind::EcP256)
                | (
                    SignAlg::Rs256
                        | SignAlg::Rs384
                        | SignAlg::Rs512
                        | SignAlg::Ps256
                        | SignAlg::Ps384
                        | SignAlg::Ps512,
                    KeyKind::Rsa(_)
                )
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("key generation failed")]
    KeyGeneration,
    #[error("the subject '{0}' is not a distinguished name of CN/O/OU/L/ST/C parts")]
    Subject(String),
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    #[error("the algorithm does not fit the key type")]
    AlgorithmMismatch,
    #[error("the digest length does not fit the algorithm")]
    DigestLength,
    #[error("signing failed")]
    Sign,
    #[error("PKCS#12 encoding failed: {0}")]
    Pkcs12(String),
}

impl PrivateKey {
    pub fn generate(kind: KeyKind) -> Result<PrivateKey, CryptoError> {
        let kp = match kind {
            KeyKind::Rsa(bits) => {
                let size = match bits {
                    2048 => rcgen::RsaKeySize::_2048,
                    3072 => rcgen::RsaKeySize::_3072,
                    4096 => rcgen::RsaKeySize::_4096,
                    _ => return Err(CryptoError::KeyGeneration),
                };
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
            }
            KeyKind::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        }
        .map_err(|_| CryptoError::KeyGeneration)?;
        Ok(PrivateKey {
            kind,
            pkcs8: kp.serialize_der(),
        })
    }

    fn rcgen_pair(&self) -> Result<KeyPair, CryptoError> {
        let alg = match self.kind {
            KeyKind::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
            KeyKind::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        let der = rustls_pki_der(&self.pkcs8);
        KeyPair::from_pkcs8_der_and_sign_algo(&der, alg)
            .map_err(|e| CryptoError::Certificate(e.to_string()))
    }

    /// Signs a digest the caller computed, as Key Vault's `sign` does; ES256 answers the
    /// fixed-width `r || s` form JWS uses (RFC 7518 section 3.4).
    pub fn sign_digest(&self, alg: SignAlg, digest_bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if !alg.fits(self.kind) {
            return Err(CryptoError::AlgorithmMismatch);
        }
        if digest_bytes.len() != alg.digest_len() {
            return Err(CryptoError::DigestLength);
        }
        let d = digest::Digest::import_less_safe(digest_bytes, alg.digest_alg())
            .map_err(|_| CryptoError::DigestLength)?;
        match self.kind {
            KeyKind::EcP256 => {
                let kp = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &self.pkcs8,
                )
                .map_err(|_| CryptoError::Sign)?;
                Ok(kp
                    .sign_digest(&d)
                    .map_err(|_| CryptoError::Sign)?
                    .as_ref()
                    .to_vec())
            }
            KeyKind::Rsa(_) => {
                let kp = RsaKeyPair::from_pkcs8(&self.pkcs8).map_err(|_| CryptoError::Sign)?;
                let pad: &'static dyn signature::RsaEncoding = match alg {
                    SignAlg::Rs256 => &signature::RSA_PKCS1_SHA256,
                    SignAlg::Rs384 => &signature::RSA_PKCS1_SHA384,
                    SignAlg::Rs512 => &signature::RSA_PKCS1_SHA512,
                    SignAlg::Ps256 => &signature::RSA_PSS_SHA256,
                    SignAlg::Ps384 => &signature::RSA_PSS_SHA384,
                    SignAlg::Ps512 => &signature::RSA_PSS_SHA512,
                    SignAlg::Es256 => return Err(CryptoError::AlgorithmMismatch),
                };
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign_digest(pad, &d, &mut sig)
                    .map_err(|_| CryptoError::Sign)?;
                Ok(sig)
            }
        }
    }
}

fn rustls_pki_der(pkcs8: &[u8]) -> rustls::pki_types::PrivatePkcs8KeyDer<'static> {
    rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.to_vec())
}

/// The parts of an X.509 `subject` Key Vault policies carry (`CN=name, O=org`).
fn distinguished_name(subject: &str) -> Result<DistinguishedName, CryptoError> {
    let mut dn = DistinguishedName::new();
    for part in subject.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| CryptoError::Subject(subject.to_string()))?;
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            "C" => DnType::CountryName,
            _ => return Err(CryptoError::Subject(subject.to_string())),
        };
        dn.push(ty, v.trim());
    }
    if dn.iter().next().is_none() {
        return Err(CryptoError::Subject(subject.to_string()));
    }
    Ok(dn)
}

fn offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, CryptoError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| CryptoError::Certificate(e.to_string()))
}

/// A self-signed certificate for `key` (issuer `Self`), valid from `nbf` to `exp`, with the
/// policy's subject and DNS names; DER.
pub fn self_signed(
    key: &PrivateKey,
    subject: &str,
    dns_names: &[String],
    nbf: DateTime<Utc>,
    exp: DateTime<Utc>,
) -> Result<Vec<u8>, CryptoError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = distinguished_name(subject)?;
    p.not_before = offset(nbf)?;
    p.not_after = offset(exp)?;
    p.subject_alt_names = dns_names
        .iter()
        .map(|n| {
            n.clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| CryptoError::Subject(n.clone()))
        })
        .collect::<Result<_, _>>()?;
    let serial: [u8; 16] = rand::random();
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let pair = key.rcgen_pair()?;
    let cert = p
        .self_signed(&pair)
        .map_err(|e| CryptoError::Certificate(e.to_string()))?;
    Ok(cert.der().to_vec())
}

/// A PKCS#10 request for `key` and `subject` (the pending operation's `csr`).
pub fn csr(key: &PrivateKey, subject: &str) -> Result<Vec<u8>, CryptoError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = distinguished_name(subject)?;
    let pair = key.rcgen_pair()?;
    let req = p
        .serialize_request(&pair)
        .map_err(|e| CryptoError::Certificate(e.to_string()))?;
    Ok(req.der().to_vec())
}

/// The certificate's secret: PKCS#12 (base64, no password, as Key Vault hands it out) or PEM
/// (private key then certificate). Without `key` (a non-exportable key) only the certificate
/// ("the private key isn't part of the value", *Export certificates from Azure Key Vault*,
/// MicrosoftDocs/azure-docs articles/key-vault/certificates/how-to-export-certificate.md).
pub fn secret_value(
    cer: &[u8],
    key: Option<&PrivateKey>,
    pem: bool,
) -> Result<String, CryptoError> {
    if pem {
        let mut out = String::new();
        if let Some(k) = key {
            out.push_str(&pem_block("PRIVATE KEY", &k.pkcs8));
        }
        out.push_str(&pem_block("CERTIFICATE", cer));
        return Ok(out);
    }
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKeyChain};
    let c = Certificate::from_der(cer).map_err(|e| CryptoError::Pkcs12(e.to_string()))?;
    let mut ks = KeyStore::new();
    match key {
        Some(k) => {
            let id = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, cer);
            let chain = PrivateKeyChain::new(k.pkcs8.clone(), id.as_ref(), [c]);
            ks.add_entry("certificate", KeyStoreEntry::PrivateKeyChain(chain));
        }
        None => ks.add_entry("certificate", KeyStoreEntry::Certificate(c)),
    }
    let der = ks
        .writer("")
        .write()
        .map_err(|e| CryptoError::Pkcs12(e.to_string()))?;
    Ok(crate::util::b64(&der))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b = crate::util::b64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// base64url SHA-1 of the DER certificate (`x5t`).
pub fn x5t(cer: &[u8]) -> String {
    b64url(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, cer).as_ref())
}

/// SHA-1 of the DER certificate as upper-case hex: the thumbprint App Service settings such as
/// `WEBSITE_LOAD_CERTIFICATES` name, and Key Vault's `x5t` decoded.
pub fn sha1_hex_upper(cer: &[u8]) -> String {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, cer)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// base64url SHA-256 of the DER certificate (`x5t#S256`).
pub fn x5t_s256(cer: &[u8]) -> String {
    b64url(digest::digest(&digest::SHA256, cer).as_ref())
}

/// What a DER certificate says that the services check: validity and public key.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub nbf: i64,
    pub exp: i64,
    /// The JWK members of the public key (`kty`, `n`/`e` or `crv`/`x`/`y`).
    pub jwk: serde_json::Map<String, serde_json::Value>,
    pub kind: KeyKind,
    spki_key: Vec<u8>,
}

pub fn parse_cert(cer: &[u8]) -> Option<CertInfo> {
    let (_, c) = X509Certificate::from_der(cer).ok()?;
    let v = c.validity();
    let pk = c.public_key();
    let spki_key = pk.subject_public_key.data.to_vec();
    let mut jwk = serde_json::Map::new();
    let kind = match pk.parsed().ok()? {
        PublicKey::RSA(r) => {
            let n = r
                .modulus
                .iter()
                .skip_while(|b| **b == 0)
                .copied()
                .collect::<Vec<_>>();
            jwk.insert("kty".into(), "RSA".into());
            jwk.insert("n".into(), b64url(&n).into());
            jwk.insert("e".into(), b64url(r.exponent).into());
            KeyKind::Rsa((n.len() * 8) as u32)
        }
        PublicKey::EC(p) => {
            let d = p.data();
            if d.len() != 65 || d[0] != 4 {
                return None;
            }
            jwk.insert("kty".into(), "EC".into());
            jwk.insert("crv".into(), "P-256".into());
            jwk.insert("x".into(), b64url(&d[1..33]).into());
            jwk.insert("y".into(), b64url(&d[33..]).into());
            KeyKind::EcP256
        }
        _ => return None,
    };
    Some(CertInfo {
        nbf: v.not_before.timestamp(),
        exp: v.not_after.timestamp(),
        jwk,
        kind,
        spki_key,
    })
}

/// A compact JWS split into its parts (no verification yet).
#[derive(Debug, Clone)]
pub struct Jws {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
    signing_input: String,
    signature: Vec<u8>,
}

pub fn parse_jws(token: &str) -> Option<Jws> {
    let mut it = token.split('.');
    let (h, c, s) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let header = serde_json::from_slice(&b64url_decode(h)?).ok()?;
    let claims = serde_json::from_slice(&b64url_decode(c)?).ok()?;
    Some(Jws {
        header,
        claims,
        signing_input: format!("{h}.{c}"),
        signature: b64url_decode(s)?,
    })
}

impl Jws {
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(|v| v.as_str())
    }

    /// Does the signature verify with the public key of `cert` under the header's `alg`?
    pub fn verifies_with(&self, cert: &CertInfo) -> bool {
        let alg: &'static dyn signature::VerificationAlgorithm = match (self.alg(), cert.kind) {
            (Some("RS256"), KeyKind::Rsa(_)) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (Some("RS384"), KeyKind::Rsa(_)) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (Some("RS512"), KeyKind::Rsa(_)) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (Some("PS256"), KeyKind::Rsa(_)) => &signature::RSA_PSS_2048_8192_SHA256,
            (Some("PS384"), KeyKind::Rsa(_)) => &signature::RSA_PSS_2048_8192_SHA384,
            (Some("PS512"), KeyKind::Rsa(_)) => &signature::RSA_PSS_2048_8192_SHA512,
            (Some("ES256"), KeyKind::EcP256) => &signature::ECDSA_P256_SHA256_FIXED,
            _ => return false,
        };
        UnparsedPublicKey::new(alg, &cert.spki_key)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jws(key: &PrivateKey, alg: SignAlg, name: &str) -> String {
        let h = b64url(format!(r#"{{"alg":"{name}"}}"#).as_bytes());
        let c = b64url(br#"{"a":1}"#);
        let input = format!("{h}.{c}");
        let d = digest::digest(alg.digest_alg(), input.as_bytes());
        let sig = key.sign_digest(alg, d.as_ref()).unwrap();
        format!("{input}.{}", b64url(&sig))
    }

    #[test]
    fn sign_digest_verifies_as_jws_and_a_tampered_one_does_not() {
        let now = Utc::now();
        for (kind, alg, name) in [
            (KeyKind::Rsa(2048), SignAlg::Rs256, "RS256"),
            (KeyKind::Rsa(2048), SignAlg::Ps256, "PS256"),
            (KeyKind::EcP256, SignAlg::Es256, "ES256"),
        ] {
            let key = PrivateKey::generate(kind).unwrap();
            let cer =
                self_signed(&key, "CN=t", &[], now, now + chrono::Duration::days(30)).unwrap();
            let info = parse_cert(&cer).unwrap();
            let t = jws(&key, alg, name);
            assert!(parse_jws(&t).unwrap().verifies_with(&info), "{name}");
            let tampered = t.replacen(".eyJ", ".eyK", 1);
            assert!(
                !parse_jws(&tampered).is_some_and(|j| j.verifies_with(&info)),
                "{name}"
            );
        }
        let key = PrivateKey::generate(KeyKind::EcP256).unwrap();
        assert_eq!(
            key.sign_digest(SignAlg::Rs256, &[0; 32]),
            Err(CryptoError::AlgorithmMismatch)
        );
        assert_eq!(
            key.sign_digest(SignAlg::Es256, &[0; 31]),
            Err(CryptoError::DigestLength)
        );
        assert!(!format!("{key:?}").contains(&b64url(&key.pkcs8)[..20]));
    }

    #[test]
    fn pkcs12_round_trips_with_and_without_the_key() {
        let now = Utc::now();
        let key = PrivateKey::generate(KeyKind::Rsa(2048)).unwrap();
        let cer = self_signed(
            &key,
            "CN=app, O=Contoso",
            &["a.example".into()],
            now,
            now + chrono::Duration::days(30),
        )
        .unwrap();
        let with =
            crate::util::b64_decode(&secret_value(&cer, Some(&key), false).unwrap()).unwrap();
        let ks = p12_keystore::KeyStore::from_pkcs12(&with, "").unwrap();
        let (_, chain) = ks.private_key_chain().unwrap();
        assert_eq!(chain.chain()[0].as_der(), &cer[..]);
        let without = crate::util::b64_decode(&secret_value(&cer, None, false).unwrap()).unwrap();
        let ks = p12_keystore::KeyStore::from_pkcs12(&without, "").unwrap();
        assert!(ks.private_key_chain().is_none());
        let pem = secret_value(&cer, None, true).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----") && !pem.contains("PRIVATE KEY"));
        assert!(distinguished_name("nonsense").is_err());
    }
}

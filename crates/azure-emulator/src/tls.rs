//! The emulator's certificate authority (made at start with rcgen) and the TLS server config.
//!
//! The leaf certificate covers every emulated Azure host name (a wildcard for vaults),
//! `localhost` and `127.0.0.1`; `issue_server_cert` signs more leaves for other local HTTPS
//! servers (Azurite) so one CA file is all a client has to trust.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::EmulatorError;

pub const HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "graph.microsoft.com",
    "management.azure.com",
    "*.vault.azure.net",
];

pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

fn tls_err(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Tls(e.to_string())
}

impl Ca {
    pub fn generate() -> Result<Ca, EmulatorError> {
        let key = KeyPair::generate().map_err(tls_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "azure-emulator test CA");
        dn.push(DnType::OrganizationName, "secret-rotator azure-emulator");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(tls_err)?;
        Ok(Ca {
            pem: cert.pem(),
            params,
            key,
        })
    }

    /// A leaf (cert PEM, key PEM) for the given DNS names / IP literals.
    pub fn issue(&self, names: &[String]) -> Result<(String, String), EmulatorError> {
        if names.is_empty() {
            return Err(EmulatorError::Tls(
                "a server certificate needs at least one name".into(),
            ));
        }
        let key = KeyPair::generate().map_err(tls_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        let mut sans = vec![];
        for n in names {
            if let Ok(ip) = n.parse::<std::net::IpAddr>() {
                sans.push(SanType::IpAddress(ip));
            } else {
                sans.push(SanType::DnsName(n.clone().try_into().map_err(|e| {
                    EmulatorError::Tls(format!("bad DNS name '{n}': {e}"))
                })?));
            }
        }
        params.subject_alt_names = sans;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].clone());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, EmulatorError> {
        let mut names: Vec<String> = HOSTS.iter().map(|s| s.to_string()).collect();
        names.push("localhost".into());
        names.push("127.0.0.1".into());
        let (cert_pem, key_pem) = self.issue(&names)?;
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<rustls::pki_types::CertificateDer<'static>> = vec![
            rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
                .map_err(tls_err)?,
            rustls::pki_types::CertificateDer::from_pem_slice(self.pem.as_bytes())
                .map_err(tls_err)?,
        ];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(tls_err)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(tls_err)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

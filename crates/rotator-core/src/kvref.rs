//! App Service Key Vault references: `@Microsoft.KeyVault(...)` in an app setting's value.
//!
//! Two forms exist (App Service docs, "Use Key Vault references"):
//! `@Microsoft.KeyVault(SecretUri=https://{vault}.vault.azure.net/secrets/{name}/{version?})` and
//! `@Microsoft.KeyVault(VaultName={vault};SecretName={name};SecretVersion={version?})`.
//! A reference without a version follows the latest version (re-read every 24 h, on a config
//! change, or on refresh); one with a version is pinned and must be rewritten on rotation.

use crate::cloud::Cloud;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultReference {
    pub vault: String,
    pub secret: String,
    pub version: Option<String>,
}

impl KeyVaultReference {
    /// Parses a setting value; `None` when it is not a Key Vault reference (or is malformed).
    pub fn parse(value: &str) -> Option<Self> {
        let inner = value
            .trim()
            .strip_prefix("@Microsoft.KeyVault(")?
            .strip_suffix(')')?;
        let mut uri = None;
        let (mut vault, mut secret, mut version) = (None, None, None);
        for part in inner.split(';') {
            let (k, v) = part.split_once('=')?;
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "secreturi" => uri = Some(v),
                "vaultname" => vault = Some(v),
                "secretname" => secret = Some(v),
                "secretversion" => version = Some(v).filter(|s| !s.is_empty()),
                _ => return None,
            }
        }
        if let Some(uri) = uri {
            let url = url::Url::parse(&uri).ok()?;
            let host = url.host_str()?;
            let vault = host.split('.').next()?.to_string();
            let mut segs = url.path_segments()?.filter(|s| !s.is_empty());
            if segs.next()? != "secrets" {
                return None;
            }
            let secret = segs.next()?.to_string();
            let version = segs.next().map(str::to_string);
            return Some(Self {
                vault,
                secret,
                version,
            });
        }
        Some(Self {
            vault: vault?,
            secret: secret?,
            version,
        })
    }

    /// The reference pinned to `version`, in the SecretUri form.
    pub fn pinned(cloud: Cloud, vault: &str, secret: &str, version: &str) -> String {
        format!(
            "@Microsoft.KeyVault(SecretUri={}/secrets/{secret}/{version})",
            cloud.vault_url(vault)
        )
    }

    pub fn points_at(&self, vault: &str, secret: &str) -> bool {
        self.vault.eq_ignore_ascii_case(vault) && self.secret.eq_ignore_ascii_case(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let r = KeyVaultReference::parse(
            "@Microsoft.KeyVault(VaultName=kv5sutozr67fiik;SecretName=TeamsClientSecret)",
        )
        .unwrap();
        assert_eq!(r.vault, "kv5sutozr67fiik");
        assert_eq!(r.secret, "TeamsClientSecret");
        assert_eq!(r.version, None);
        let r = KeyVaultReference::parse(
            "@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/s1/0123456789abcdef0123456789abcdef)",
        )
        .unwrap();
        assert_eq!(
            (r.vault.as_str(), r.secret.as_str(), r.version.as_deref()),
            ("kv1", "s1", Some("0123456789abcdef0123456789abcdef"))
        );
        let r = KeyVaultReference::parse(
            "@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/s1/)",
        )
        .unwrap();
        assert_eq!(r.version, None);
    }

    #[test]
    fn rejects_non_references() {
        for v in [
            "plain",
            "@Microsoft.KeyVault(",
            "@Microsoft.KeyVault(Foo=bar)",
            "@Microsoft.KeyVault(SecretUri=not a url)",
            "@Microsoft.KeyVault(VaultName=kv)",
        ] {
            assert_eq!(KeyVaultReference::parse(v), None, "{v}");
        }
    }
}

//! Who sent a request, decided from its credentials alone, before any fault is applied: the
//! request log names the caller of every request whose credentials identify one, whatever the
//! fault rule then does to the answer (a connection reset is still a request its sender made),
//! and says why when it names none.
//!
//! Sources: Key Vault's AuditEvent log records the `identity` of the token presented with
//! each request, failed ones included
//! (<https://learn.microsoft.com/azure/key-vault/general/logging#interpret-your-key-vault-logs>);
//! Entra's service principal sign-in log records the client id of failed client-credential
//! sign-ins too (<https://learn.microsoft.com/entra/identity/monitoring-health/concept-service-principal-sign-ins>).
//!
//! What identifies a caller:
//! - Graph, Key Vault, ARM: the `appid` of a bearer token this emulator signed, whatever its
//!   audience, tenant or lifetime (the service may still refuse it; the log says who sent it);
//! - the token endpoint: the client id the client credentials present (HTTP Basic or form);
//! - the managed-identity endpoint: the identity its X-IDENTITY-HEADER selects.

use serde::{Deserialize, Serialize};

use crate::server::{Req, Service, Shared};

/// Why a logged request names no caller.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum CallerAbsence {
    /// No credentials at all: an anonymous endpoint (OpenID discovery), Key Vault's challenge
    /// round trip, a token request without a client id, an MSI request without its header.
    NoCredentials,
    /// Credentials that name nobody: a token this emulator did not sign or cannot parse, a
    /// malformed Authorization header, a client id that is not a GUID, an identity header that
    /// matches no identity.
    CredentialsRefused,
}

/// The client id of the request's sender, or why it has none.
pub fn identify(shared: &Shared, req: &Req, svc: Service) -> Result<String, CallerAbsence> {
    let id = match svc {
        Service::Entra if crate::entra::classify(req) == Some("token") => {
            crate::entra::presented_client_id(req)
        }
        Service::Entra | Service::Unknown => Err(CallerAbsence::NoCredentials),
        Service::Msi => crate::entra::msi_client_id(shared, req),
        Service::Graph | Service::KeyVault | Service::Arm => bearer_client_id(shared, req),
    };
    id.map(|id| id.to_string())
}

fn bearer_client_id(shared: &Shared, req: &Req) -> Result<uuid::Uuid, CallerAbsence> {
    let token = crate::jwt::bearer(&req.headers).ok_or(CallerAbsence::NoCredentials)?;
    let token = token.map_err(|_| CallerAbsence::CredentialsRefused)?;
    crate::jwt::decode(&shared.key, &token)
        .map(|c| c.appid)
        .map_err(|_| CallerAbsence::CredentialsRefused)
}

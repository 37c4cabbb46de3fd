//! The data the engine's ports speak besides the planner's model ([`crate::planner`]): who the
//! rotator signs in as, what a directory listing returns, what an Automation variable write
//! did. Plain data: the adapters in the main crate (`azure::graph`, `azure::credential`,
//! `azure::automation`) build these from Azure's answers, and the engine's ports name only
//! these, so the engine never sees a client's type.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::planner::AppState;

/// The claims of an access token that say who the caller is and what it may do (read from
/// the rotator's own Graph token by `azure::credential::identity_from_jwt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// Object id of the caller (the service principal, managed identity or user).
    pub object_id: Uuid,
    /// App roles (application permissions) of an app-only token; `None` for a user's token.
    pub roles: Option<Vec<String>>,
}

impl TokenIdentity {
    /// False when the token is an application's and holds no role that reads every application.
    /// A user's token may read them through directory roles, so it is given the benefit.
    pub fn can_read_all_applications(&self) -> bool {
        const READ_ALL: [&str; 4] = [
            "Application.Read.All",
            "Application.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ];
        match &self.roles {
            None => true,
            Some(roles) => roles
                .iter()
                .any(|r| READ_ALL.iter().any(|x| x.eq_ignore_ascii_case(r))),
        }
    }
}

/// A certificate credential (`keyCredentials` entry): metadata only, Graph never lists the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// One application of a list page: its passwords (in [`AppState`]) and its certificates.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedApp {
    pub app: AppState,
    pub certificates: Vec<CertificateInfo>,
}

/// What writing an Automation variable did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetVariableOutcome {
    /// An existing encrypted variable got the new value.
    Updated,
    /// The variable did not exist and was created encrypted.
    Created,
    /// The variable exists with `isEncrypted: false`; nothing was written (ARM cannot turn
    /// encryption on for an existing variable: it must be deleted and created again).
    RefusedUnencrypted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_every_application_needs_a_read_all_role_unless_a_user_signs_in() {
        let id = |roles: Option<&[&str]>| TokenIdentity {
            object_id: Uuid::nil(),
            roles: roles.map(|r| r.iter().map(|s| s.to_string()).collect()),
        };
        assert!(id(None).can_read_all_applications(), "a user's token");
        assert!(id(Some(&["application.read.all"])).can_read_all_applications());
        assert!(id(Some(&["Directory.ReadWrite.All"])).can_read_all_applications());
        assert!(!id(Some(&["Application.ReadWrite.OwnedBy"])).can_read_all_applications());
        assert!(!id(Some(&[])).can_read_all_applications());
    }
}

//! [`describe_step`]: one line per certificate step for the dry-run plan and `Status`, naming
//! versions, key ids and consumers — never a key or a PFX (the steps hold none).

use super::model::*;

/// How a `keyCredentials` change is written, in words.
fn method(m: &KeyWrite) -> String {
    match m {
        KeyWrite::WithProof { signer } => {
            format!("with a proof signed in Key Vault by version {signer}")
        }
        KeyWrite::MergeWrite { keep } => format!(
            "by a merge-write of keyCredentials keeping the {} other key(s) exactly",
            keep.len()
        ),
    }
}

fn renew_reason(r: &RenewReason) -> String {
    match r {
        RenewReason::NotCreated => "the certificate has no version to take up".into(),
        RenewReason::ExpiringSoon { expires } => {
            format!("the current version expires {}", expires.format("%Y-%m-%d"))
        }
        RenewReason::Expired { expired } => {
            format!("the current version expired {}", expired.format("%Y-%m-%d"))
        }
        RenewReason::CurrentDisabled => "the current version is disabled".into(),
        RenewReason::ExpiryUnknown => "the current version has no expiry date".into(),
        RenewReason::CurrentRefused => "Entra refuses the current version's key".into(),
    }
}

/// One human line for a certificate step.
pub fn describe_step(step: &CertStep) -> String {
    match step {
        CertStep::RequestVersion { reason } => format!(
            "request a new certificate version from Key Vault ({})",
            renew_reason(reason)
        ),
        CertStep::AdoptVersion { version } => {
            format!("adopt version {version} made outside the rotator (tag it)")
        }
        CertStep::AdoptCurrent { version, key_id } => format!(
            "adopt version {version} as the current one (already on the application as key {key_id})"
        ),
        CertStep::AddKey { version, method: m } => format!(
            "add version {version}'s public key to the application {}",
            method(m)
        ),
        CertStep::Prove {
            version, key_id, ..
        } => format!(
            "prove key {key_id} (version {version}) with a client-assertion token request, then mark it current"
        ),
        CertStep::UpdateConsumer { index, .. } => {
            format!("move consumer #{} to the current version", index + 1)
        }
        CertStep::Notify { index, .. } => format!(
            "send the manual step to notify-only consumer #{}",
            index + 1
        ),
        CertStep::CompletePropagation { remove_after } => format!(
            "prove the current version again and mark it propagated (previous key removed after {})",
            remove_after.format("%Y-%m-%d %H:%M UTC")
        ),
        CertStep::RemoveKey {
            key_id,
            reason,
            method: m,
        } => format!(
            "remove key {key_id} ({}) {}",
            match reason {
                KeyRemoveReason::Superseded => "superseded, grace over",
                KeyRemoveReason::Orphan => "added by a run whose version was never taken up",
                KeyRemoveReason::Expired => "expired",
            },
            method(m)
        ),
        CertStep::MarkRetired => "mark the rotation retired".into(),
        CertStep::ReleaseSecret { remove_after } => format!(
            "release the replaced client secret: every consumer has moved; it is removed after {}",
            remove_after.format("%Y-%m-%d %H:%M UTC")
        ),
        CertStep::RemoveClientSecret { credential, key_id } => {
            format!("remove password {key_id} of the replaced secret credential {credential}")
        }
        CertStep::MarkConverted => "mark the conversion from the client secret done".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn names_the_method_and_reason() {
        let s = describe_step(&CertStep::RemoveKey {
            key_id: Uuid::nil(),
            reason: KeyRemoveReason::Superseded,
            method: KeyWrite::MergeWrite {
                keep: vec![Uuid::nil(); 3],
            },
        });
        assert!(s.contains("superseded") && s.contains("keeping the 3 other key(s)"));
        let s = describe_step(&CertStep::AddKey {
            version: CertVersionId("abc".into()),
            method: KeyWrite::WithProof {
                signer: CertVersionId("old".into()),
            },
        });
        assert!(s.contains("version abc") && s.contains("signed in Key Vault by version old"));
    }
}

//! The README's promises that can drift: its configuration table lists every setting the binary
//! reads, and its result-code table every code the probe can answer.

use secret_rotator::settings::SETTING_SPECS;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn configuration_table_lists_every_setting() {
    let r = readme();
    let missing: Vec<_> = SETTING_SPECS
        .iter()
        .filter(|s| !r.contains(&format!("| `{}` |", s.name)))
        .map(|s| s.name)
        .collect();
    assert!(
        missing.is_empty(),
        "README configuration table lacks {missing:?}"
    );
}

#[test]
fn result_code_table_lists_every_code() {
    use secret_rotator::engine::report::ResultCode::*;
    let r = readme();
    for code in [
        Ok,
        PolicyInvalid,
        CredentialRefused,
        IdentityUnavailable,
        KeyVaultAccess,
        GraphAccess,
        StorageAccess,
        SecretMissing,
        ConsumerOutOfSync,
        RotationOverdue,
        RotationFailed,
        ConsumerAccess,
        BadRequest,
        Internal,
    ] {
        assert!(
            r.contains(&format!("| {} |", code.code())),
            "README result codes lack {code:?} ({})",
            code.code()
        );
    }
}

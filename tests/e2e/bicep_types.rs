//! Type check of every template in `infra/` against the Bicep type data in
//! `../shared/bicep-types` (Azure/bicep-types-az and microsoftgraph/msgraph-bicep-types, see its
//! SOURCE.md), plus the Flex Consumption rules: what a Bicep compiler and the Flex plan would
//! refuse, found offline. `checker_*` tests break a copy of the templates in one place each and
//! check that the problem is reported with its file, line and reason.

mod checker;
mod types;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use checker::{Checker, FLEX_REFUSED};
use types::TypeData;

use crate::support::bicep::with_edit;
use crate::support::shared::shared_dir;

fn infra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra")
}

/// `../shared/bicep-types` (support::shared); `ROTATOR_BICEP_TYPES_DIR` overrides it.
fn type_data() -> &'static TypeData {
    static DATA: OnceLock<TypeData> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = shared_dir("bicep-types", "ROTATOR_BICEP_TYPES_DIR", |d| {
            d.join("SOURCE.md").is_file() && d.join("az/generated").is_dir()
        });
        TypeData::new(&dir)
    })
}

/// Every `.bicep` and `.bicepparam` file under `infra/` as (path relative to infra/, text).
fn sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![infra_dir()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "bicep" || e == "bicepparam")
            {
                let rel = path
                    .strip_prefix(infra_dir())
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((rel, text));
            }
        }
    }
    out.sort();
    out
}

/// The problems in the real templates with one edit applied (which must apply).
fn problems_after(rel: &str, from: &str, to: &str) -> Vec<String> {
    let edited = with_edit(sources(), rel, from, to);
    Checker::new(&edited, type_data()).check_all()
}

/// The 1-based line of the first occurrence of `needle` in infra/`rel`.
fn line_of(rel: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(infra_dir().join(rel)).unwrap();
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in {rel}"));
    text[..at].lines().count() + usize::from(text[..at].ends_with('\n') || at == 0)
}

fn assert_reported(problems: &[String], at: &str, reason: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("{at}:")) && p.contains(reason)),
        "expected a problem at {at} containing `{reason}`, got:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_template_type_checks_against_the_shared_type_data() {
    let sources = sources();
    assert!(sources.iter().any(|(r, _)| r == "main.bicep"));
    let problems = Checker::new(&sources, type_data()).check_all();
    assert!(
        problems.is_empty(),
        "infra/ does not type-check:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_resource_type_the_templates_use_is_found() {
    // Also the inventory (run with --nocapture): each type and api-version checked.
    let checker = Checker::new(&sources(), type_data());
    let mut seen = 0;
    for f in checker.files.values() {
        for line in f.resource_types() {
            println!("{}: {line}", f.rel);
            seen += 1;
        }
    }
    assert!(seen >= 15, "only {seen} resource declarations found");
    let problems = checker.check_all();
    let paths = checker.checked_paths.get();
    println!("{paths} property values checked against their types; problems: {problems:?}");
    assert!(paths >= 150, "only {paths} property values were checked");
}

#[test]
fn checker_reports_a_misspelled_property() {
    let rel = "modules/functionApp.bicep";
    let problems = problems_after(rel, "    httpsOnly: true", "    httpsOnyl: true");
    let at = format!("{rel}:{}", line_of(rel, "    httpsOnly: true"));
    assert_reported(&problems, &at, "properties.httpsOnyl: no such property");
    assert_reported(&problems, &at, "did you mean `httpsOnly`?");
}

#[test]
fn checker_reports_a_wrong_enum_value() {
    let rel = "modules/storage.bicep";
    let problems = problems_after(
        rel,
        "    publicAccess: 'None'",
        "    publicAccess: 'Private'",
    );
    let at = format!("{rel}:{}", line_of(rel, "    publicAccess: 'None'"));
    assert_reported(
        &problems,
        &at,
        "properties.publicAccess: 'Private' is not an allowed value ('Container' | 'Blob' | 'None')",
    );
    // Deep in a nested object (sites/config authsettingsV2).
    let rel = "modules/functionApp.bicep";
    let from = "unauthenticatedClientAction: 'Return401'";
    let problems = problems_after(rel, from, "unauthenticatedClientAction: 'Return402'");
    let at = format!("{rel}:{}", line_of(rel, from));
    assert_reported(
        &problems,
        &at,
        "properties.globalValidation.unauthenticatedClientAction: 'Return402' is not an allowed value",
    );
    // Microsoft Graph types too: a misspelled required property is both unknown and missing.
    let rel = "modules/graphAppRole.bicep";
    let problems = problems_after(
        rel,
        "  appRoleId: applicationReadWriteOwnedBy",
        "  appRoleID: applicationReadWriteOwnedBy",
    );
    let at = format!(
        "{rel}:{}",
        line_of(rel, "  appRoleId: applicationReadWriteOwnedBy")
    );
    assert_reported(&problems, &at, "appRoleID: no such property");
    assert_reported(&problems, rel, "appRoleId: required property missing");
    let rel = "modules/storage.bicep";
    // An open enum (x-ms-enum modelAsString: the union includes `string`) takes any string, as
    // in the Bicep compiler: no false alarm.
    let problems = problems_after(
        rel,
        "minimumTlsVersion: 'TLS1_2'",
        "minimumTlsVersion: 'TLS1_4'",
    );
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn checker_reports_a_missing_required_property() {
    let rel = "modules/storage.bicep";
    let problems = problems_after(rel, "  sku: {\n    name: 'Standard_LRS'\n  }\n", "");
    let at = format!("{rel}:{}", line_of(rel, "resource account "));
    assert_reported(&problems, &at, "sku: required property missing");
}

#[test]
fn checker_reports_a_read_only_property() {
    let rel = "modules/storage.bicep";
    let problems = problems_after(
        rel,
        "    allowSharedKeyAccess: false\n",
        "    allowSharedKeyAccess: false\n    provisioningState: 'Succeeded'\n",
    );
    let at = format!("{rel}:{}", line_of(rel, "    allowBlobPublicAccess: false"));
    assert_reported(
        &problems,
        &at,
        "properties.provisioningState: read-only property",
    );
}

#[test]
fn checker_reports_a_wrong_value_kind_and_range() {
    let rel = "modules/storage.bicep";
    let problems = problems_after(rel, "      days: 30", "      days: '30'");
    let at = format!("{rel}:{}", line_of(rel, "      days: 30"));
    assert_reported(
        &problems,
        &at,
        "deleteRetentionPolicy.days: '30' where the type is int",
    );
    let problems = problems_after(rel, "      days: 30", "      days: 400");
    assert_reported(&problems, &at, "400 is above the maximum 365");
}

#[test]
fn checker_reports_an_unknown_api_version_and_type() {
    let rel = "modules/storage.bicep";
    let problems = problems_after(
        rel,
        "'Microsoft.Storage/storageAccounts@2023-05-01' = {",
        "'Microsoft.Storage/storageAccounts@2099-01-01' = {",
    );
    let at = format!("{rel}:{}", line_of(rel, "resource account "));
    assert_reported(&problems, &at, "api-version not in the type data (known:");
    let problems = problems_after(
        rel,
        "'Microsoft.Storage/storageAccounts@2023-05-01' = {",
        "'Microsoft.Storage/storageAcounts@2023-05-01' = {",
    );
    assert_reported(&problems, &at, "resource type not in the type data");
}

#[test]
fn checker_reports_what_flex_refuses() {
    let rel = "modules/functionApp.bicep";
    for (from, to, path) in [
        (
            "ftpsState: isFlex ? null : 'Disabled'",
            "ftpsState: 'Disabled'",
            "properties.siteConfig.ftpsState",
        ),
        (
            "reserved: isFlex ? null : true",
            "reserved: true",
            "properties.reserved",
        ),
        (
            "vnetRouteAllEnabled: isFlex || empty(subnetId) ? null : true",
            "vnetRouteAllEnabled: empty(subnetId) ? null : true",
            "properties.vnetRouteAllEnabled",
        ),
    ] {
        let problems = problems_after(rel, from, to);
        let at = format!("{rel}:{}", line_of(rel, from));
        assert_reported(
            &problems,
            &at,
            &format!("{path}: Flex Consumption refuses it"),
        );
    }
    // Each rule cites where it comes from.
    for (path, source) in FLEX_REFUSED {
        assert!(source.contains("deprecations table"), "{path}: no source");
    }
}

#[test]
fn checker_reports_module_parameter_and_output_mismatches() {
    let rel = "main.bicep";
    // A parameter the module does not declare, and one it requires left out.
    let problems = problems_after(
        rel,
        "    packageContainerName: storage",
        "    packageContainer: storage",
    );
    let at = format!(
        "{rel}:{}",
        line_of(rel, "    packageContainerName: storage")
    );
    assert_reported(&problems, &at, "no parameter `packageContainer` there");
    assert_reported(
        &problems,
        rel,
        "required parameter `packageContainerName` not passed",
    );
    // A value outside the module parameter's allowed values.
    let problems = problems_after(
        rel,
        "    planKind: planKind\n",
        "    planKind: 'consumption'\n",
    );
    let at = format!("{rel}:{}", line_of(rel, "    planKind: planKind\n"));
    assert_reported(&problems, &at, "is not an allowed value");
    // An output the module does not have.
    let problems = problems_after(
        rel,
        "storage.outputs.blobEndpoint",
        "storage.outputs.blobUrl",
    );
    let at = format!("{rel}:{}", line_of(rel, "storage.outputs.blobEndpoint"));
    assert_reported(
        &problems,
        &at,
        "storage.outputs.blobUrl: modules/storage.bicep has no such output",
    );
}

#[test]
fn checker_reports_a_reference_to_a_missing_resource_property() {
    let rel = "modules/storage.bicep";
    let from = "account.properties.primaryEndpoints.blob";
    let problems = problems_after(rel, from, "account.properties.primaryEndpoint.blob");
    let at = format!("{rel}:{}", line_of(rel, from));
    assert_reported(&problems, &at, "no property `primaryEndpoint`");
}

#[test]
fn checker_reports_parameter_file_values_the_template_refuses() {
    let rel = "main.bicepparam";
    // A vault entry without the field its type requires, and one the type does not have.
    let problems = problems_after(rel, "    wholeVault: false\n", "    wholeVaults: false\n");
    let at = format!("{rel}:{}", line_of(rel, "    wholeVault: false"));
    assert_reported(
        &problems,
        &at,
        "vaults[0].wholeVaults: no such field in type vaultRef",
    );
    assert_reported(
        &problems,
        rel,
        "vaults[0].wholeVault: required field of type vaultRef missing",
    );
    // A plan kind main.bicep does not allow.
    let problems = problems_after(
        rel,
        "param planKind = 'flex'",
        "param planKind = 'consumption'",
    );
    let at = format!("{rel}:{}", line_of(rel, "param planKind = 'flex'"));
    assert_reported(
        &problems,
        &at,
        "planKind: Str(\"consumption\") is not an allowed value",
    );
    // A parameter main.bicep does not have.
    let problems = problems_after(rel, "param policyPath = ", "param policyFile = ");
    assert_reported(
        &problems,
        rel,
        "param `policyFile` is not a parameter of ./main.bicep",
    );
}

#[test]
fn checker_reports_an_escape_bicep_does_not_know() {
    let rel = "main.bicep";
    let from = "--body \"{\\\\\"principalId";
    let problems = problems_after(rel, from, "--body \"{\\\"principalId");
    let at = format!("{rel}:{}", line_of(rel, from));
    assert_reported(&problems, &at, "is not a Bicep escape sequence (BCP006)");
}

#[test]
fn checker_reports_a_resource_deployed_at_a_scope_its_type_refuses() {
    let rel = "modules/customRoles.bicep";
    let from = "resource siteSettingsUpdater ";
    let storage = "resource stray 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'stray'\n  location: 'westeurope'\n  kind: 'StorageV2'\n  sku: {\n    name: 'Standard_LRS'\n  }\n}\n\n";
    let problems = problems_after(rel, from, &format!("{storage}{from}"));
    let at = format!("{rel}:{}", line_of(rel, from));
    assert_reported(&problems, &at, "cannot be deployed at subscription scope");
}

#[test]
fn checker_allows_a_certificate_only_as_an_existing_scope() {
    let rel = "modules/access/certificate.bicep";
    let at = format!("{rel}:{}", line_of(rel, "resource certificate "));
    // Read through anything but `.id`: nothing of it can be read (no type, no ARM resource).
    let problems = problems_after(
        rel,
        "name: guid(certificate.id, principalId, certificateRoleId)",
        "name: guid(certificate.properties.x, principalId, certificateRoleId)",
    );
    assert_reported(&problems, &at, "use it only as a scope or through `.id`");
    // Deployed rather than named: ARM has no such type (Azure/bicep#7354).
    let problems = problems_after(
        rel,
        "resource certificate 'Microsoft.KeyVault/vaults/certificates@2023-07-01' existing = {",
        "resource certificate 'Microsoft.KeyVault/vaults/certificates@2023-07-01' = {",
    );
    assert_reported(&problems, &at, "resource type not in the type data");
}

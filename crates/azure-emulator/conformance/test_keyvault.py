"""Key Vault secrets data plane through azure-keyvault-secrets (default api-version, default
challenge-resource verification, real https://kv-conf.vault.azure.net URL)."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

VAULT_URL = "https://kv-conf.vault.azure.net"
SECRET = "payments-client-secret"


def client(emulator, principal: str = "rotator-sp") -> SecretClient:
    return SecretClient(vault_url=VAULT_URL, credential=emulator.credential(principal))


def test_get_latest_and_specific_version(emulator):
    kv = client(emulator)
    latest = kv.get_secret(SECRET)
    versions = emulator.scenario["vaults"][0]["secrets"][0]["versions"]
    assert latest.value == versions[-1]["value"]
    assert latest.properties.version == versions[-1]["version"]
    assert latest.id == f"{VAULT_URL}/secrets/{SECRET}/{versions[-1]['version']}"
    assert latest.properties.content_type == "text/plain"
    assert latest.properties.tags == versions[-1]["tags"]
    # Unix-second attributes are parsed into datetimes by the SDK.
    assert isinstance(latest.properties.created_on, dt.datetime)
    assert isinstance(latest.properties.updated_on, dt.datetime)
    assert latest.properties.recovery_level in {
        "Purgeable",
        "Recoverable+Purgeable",
        "Recoverable",
        "Recoverable+ProtectedSubscription",
        "CustomizedRecoverable+Purgeable",
        "CustomizedRecoverable",
        "CustomizedRecoverable+ProtectedSubscription",
    }
    assert 7 <= latest.properties.recoverable_days <= 90
    older = kv.get_secret(SECRET, versions[0]["version"])
    assert older.value == versions[0]["value"]


def test_set_secret_creates_new_version_then_lists_and_updates(emulator):
    kv = client(emulator)
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    new = kv.set_secret(
        SECRET,
        "New8Q~conformance-set-secret-value-01",
        content_type="text/plain",
        expires_on=expires,
        tags={"keyId": "3c000000-0000-4000-8000-000000000001", "rotatedBy": "rotator"},
    )
    assert new.value == "New8Q~conformance-set-secret-value-01"
    assert len(new.properties.version) == 32
    assert new.properties.expires_on == expires
    assert new.properties.enabled is True

    assert kv.get_secret(SECRET).properties.version == new.properties.version

    # Paging: one item per page forces the SDK to follow absolute nextLinks.
    pages = list(kv.list_properties_of_secret_versions(SECRET, max_page_size=1).by_page())
    items = [p for page in pages for p in page]
    assert len(items) == 3
    assert len(pages) >= 3
    assert {p.version for p in items} >= {new.properties.version}
    assert all(getattr(p, "value", None) is None for p in items)

    # Retire the oldest version: attributes and tags change, the value does not.
    oldest = emulator.scenario["vaults"][0]["secrets"][0]["versions"][0]
    updated = kv.update_secret_properties(SECRET, oldest["version"], enabled=False, tags={"state": "retired"})
    assert updated.version == oldest["version"]
    assert updated.enabled is False
    assert updated.tags == {"state": "retired"}
    # A disabled version cannot be read (403 Forbidden, innererror SecretDisabled).
    with pytest.raises(HttpResponseError) as err:
        kv.get_secret(SECRET, oldest["version"])
    assert err.value.status_code == 403
    assert oldest["value"] not in str(err.value)

    names = [p.name for p in kv.list_properties_of_secrets()]
    assert SECRET in names


def test_get_missing_secret_is_resource_not_found(emulator):
    kv = client(emulator)
    with pytest.raises(ResourceNotFoundError) as err:
        kv.get_secret("no-such-secret")
    assert err.value.status_code == 404
    assert err.value.error.code == "SecretNotFound"


def test_caller_without_role_gets_403_forbidden_by_rbac(emulator):
    kv = client(emulator, "reader-sp")
    with pytest.raises(HttpResponseError) as err:
        kv.get_secret(SECRET)
    assert err.value.status_code == 403
    assert err.value.error.code == "Forbidden"
    assert err.value.error.innererror.get("code") == "ForbiddenByRbac"
    # The secret value must not leak into the error.
    assert "Pay8Q~" not in str(err.value)


def test_secrets_user_cannot_set(emulator, mi_env):
    # Key Vault Secrets User may read but not write.
    mi_env("rotator-mi")
    kv = SecretClient(vault_url=VAULT_URL, credential=ManagedIdentityCredential())
    assert kv.get_secret(SECRET).value
    with pytest.raises(HttpResponseError) as err:
        kv.set_secret(SECRET, "Mi8Q~should-not-be-written-000000000")
    assert err.value.status_code == 403
    assert err.value.error.innererror.get("code") == "ForbiddenByRbac"


def test_unauthenticated_first_request_is_challenged(emulator):
    """The SDK's first call goes out without a token and without a body; the vault must answer
    401 with a Bearer challenge, which the SDK follows (verify_challenge_resource stays True)."""
    # The SDK caches challenges per vault host for the whole process: start from none.
    from azure.keyvault.secrets._shared import http_challenge_cache

    http_challenge_cache.clear()
    kv = client(emulator)
    secret = kv.set_secret("challenge-probe", "Chl8Q~challenge-probe-value-00000000")
    assert secret.value == "Chl8Q~challenge-probe-value-00000000"
    puts = emulator.records(method="PUT", path_contains="/secrets/challenge-probe")
    # One bodiless unauthenticated PUT (answered 401 + challenge), then the real PUT.
    assert [r.get("status") for r in puts] == [401, 200], puts
    assert kv.get_secret("challenge-probe").value == "Chl8Q~challenge-probe-value-00000000"


def test_list_versions_without_role_gets_403(emulator):
    kv = client(emulator, "reader-sp")
    with pytest.raises(HttpResponseError) as err:
        list(kv.list_properties_of_secret_versions(SECRET))
    assert err.value.status_code == 403
    assert err.value.error.innererror.get("code") == "ForbiddenByRbac"


def test_update_unknown_version_is_resource_not_found(emulator):
    kv = client(emulator)
    with pytest.raises(ResourceNotFoundError) as err:
        kv.update_secret_properties(SECRET, "ffffffffffffffffffffffffffffffff", enabled=False)
    assert err.value.status_code == 404
    assert err.value.error.code == "SecretNotFound"


def test_delete_then_reuse_name_conflicts_until_recovered(emulator):
    from azure.core.exceptions import ResourceExistsError

    kv = client(emulator)
    deleted = kv.begin_delete_secret(SECRET).result()
    assert deleted.name == SECRET
    assert deleted.recovery_id == f"{VAULT_URL}/deletedsecrets/{SECRET}"
    assert kv.get_deleted_secret(SECRET).name == SECRET
    with pytest.raises(ResourceNotFoundError):
        kv.get_secret(SECRET)
    # Soft delete keeps the name: setting it again is a 409 until recovered or purged.
    with pytest.raises(ResourceExistsError) as err:
        kv.set_secret(SECRET, "Del8Q~must-not-be-stored-0000000000")
    assert err.value.status_code == 409
    assert err.value.error.innererror.get("code") == "ObjectIsDeletedButRecoverable"
    assert "Del8Q~" not in str(err.value)
    recovered = kv.begin_recover_deleted_secret(SECRET).result()
    assert recovered.name == SECRET
    versions = emulator.scenario["vaults"][0]["secrets"][0]["versions"]
    assert kv.get_secret(SECRET).value == versions[-1]["value"]


def test_purge_frees_the_name(emulator):
    kv = client(emulator)
    kv.begin_delete_secret(SECRET).result()
    kv.purge_deleted_secret(SECRET)
    with pytest.raises(ResourceNotFoundError):
        kv.get_deleted_secret(SECRET)
    again = kv.set_secret(SECRET, "Pur8Q~value-after-purge-00000000000")
    assert [p.version for p in kv.list_properties_of_secret_versions(SECRET)] == [again.properties.version]


def test_a_sixteenth_tag_is_bad_parameter(emulator):
    # Key Vault allows 15 tags per secret (about-secrets#secret-tags); the 16th is answered
    # 400 BadParameter "Property has invalid value" (terraform-provider-azurerm#16780).
    kv = client(emulator)
    fifteen = {f"t{i}": "v" for i in range(15)}
    kv.set_secret(SECRET, "Tag8Q~fifteen-tags-are-fine-000000000", tags=fifteen)
    with pytest.raises(HttpResponseError) as err:
        kv.set_secret(SECRET, "Tag8Q~sixteen-tags-are-not-0000000000", tags={**fifteen, "t15": "v"})
    assert err.value.status_code == 400
    assert err.value.error.code == "BadParameter"
    assert "Property has invalid value" in err.value.error.message
    assert "Tag8Q~" not in str(err.value)

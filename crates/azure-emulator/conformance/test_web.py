"""Microsoft.Web/sites application settings and restart through azure-mgmt-web
(default base URL https://management.azure.com and default api-version)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import StringDictionary

RG = "rg-conf"
SITE = "func-payments"


def web(emulator, principal: str = "rotator-sp") -> WebSiteManagementClient:
    return WebSiteManagementClient(emulator.credential(principal), emulator.subscription_id)


def scenario_settings(emulator) -> dict[str, str]:
    return dict(emulator.scenario["sites"][0]["appSettings"])


def test_list_application_settings(emulator):
    got = web(emulator).web_apps.list_application_settings(RG, SITE)
    assert got.properties == scenario_settings(emulator)
    assert got.name == "appsettings"
    assert got.id.lower() == emulator.arm_id(f"Microsoft.Web/sites/{SITE}/config/appsettings").lower()


def test_update_application_settings_replaces_whole_map(emulator):
    client = web(emulator)
    settings = scenario_settings(emulator)
    settings["PAYMENTS_CLIENT_SECRET"] = "@Microsoft.KeyVault(SecretUri=https://kv-conf.vault.azure.net/secrets/payments-client-secret/0b000000000040008000000000000002)"
    settings["ADDED_BY_TEST"] = "1"
    del settings["PAYMENTS_CLIENT_ID"]
    put = client.web_apps.update_application_settings(RG, SITE, StringDictionary(properties=settings))
    assert put.properties == settings
    # PUT is a full replace: the key left out is gone.
    again = client.web_apps.list_application_settings(RG, SITE).properties
    assert again == settings
    assert "PAYMENTS_CLIENT_ID" not in again


def test_restart(emulator):
    client = web(emulator)
    client.web_apps.restart(RG, SITE)
    client.web_apps.restart(RG, SITE, soft_restart=True, synchronous=True)
    restarts = emulator.records(operation="restartSite", status=200)
    assert len(restarts) == 2, restarts


def test_unknown_site_is_resource_not_found(emulator):
    with pytest.raises(ResourceNotFoundError) as err:
        web(emulator).web_apps.list_application_settings(RG, "func-missing")
    assert err.value.status_code == 404
    assert err.value.error.code == "ResourceNotFound"


def test_caller_without_role_gets_authorization_failed(emulator):
    with pytest.raises(HttpResponseError) as err:
        web(emulator, "reader-sp").web_apps.list_application_settings(RG, SITE)
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"
    # App settings hold secrets: none may leak into the error.
    assert "KeyVault(SecretUri" not in str(err.value)


def test_restart_without_role_gets_authorization_failed(emulator):
    with pytest.raises(HttpResponseError) as err:
        web(emulator, "reader-sp").web_apps.restart(RG, SITE)
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"


def test_update_settings_without_role_gets_authorization_failed(emulator):
    with pytest.raises(HttpResponseError) as err:
        web(emulator, "reader-sp").web_apps.update_application_settings(
            RG, SITE, StringDictionary(properties={"PAYMENTS_CLIENT_SECRET": "Bad8Q~must-not-be-stored-000000000"})
        )
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"
    assert "Bad8Q~" not in str(err.value)
    # Nothing changed.
    assert web(emulator).web_apps.list_application_settings(RG, SITE).properties == scenario_settings(emulator)


def test_key_vault_references_resolve_with_the_site_identity(emulator):
    client = web(emulator)
    refs = list(client.web_apps.get_app_settings_key_vault_references(RG, SITE))
    # Only settings that are Key Vault references are listed.
    assert [r.name.rsplit("/", 1)[-1] for r in refs] == ["PAYMENTS_CLIENT_SECRET"]
    ref = refs[0].properties
    assert ref.status == "Resolved"
    assert ref.vault_name == "kv-conf"
    assert ref.secret_name == "payments-client-secret"
    versions = emulator.scenario["vaults"][0]["secrets"][0]["versions"]
    assert ref.active_version == versions[-1]["version"]
    one = client.web_apps.get_app_setting_key_vault_reference(RG, SITE, "PAYMENTS_CLIENT_SECRET")
    assert one.properties.status == "Resolved"


def test_key_vault_reference_to_missing_secret_reports_secret_not_found(emulator):
    client = web(emulator)
    settings = scenario_settings(emulator)
    settings["BROKEN_REF"] = "@Microsoft.KeyVault(SecretUri=https://kv-conf.vault.azure.net/secrets/no-such-secret/)"
    client.web_apps.update_application_settings(RG, SITE, StringDictionary(properties=settings))
    one = client.web_apps.get_app_setting_key_vault_reference(RG, SITE, "BROKEN_REF")
    assert one.properties.status == "SecretNotFound"
    with pytest.raises(HttpResponseError) as err:
        list(web(emulator, "reader-sp").web_apps.get_app_settings_key_vault_references(RG, SITE))
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"


def test_slot_settings_are_their_own(emulator):
    """Deployment slots (`…/sites/{site}/slots/{slot}`) are served like sites, with their own
    settings (WebApps.json `WebApps_ListApplicationSettingsSlot`, `…UpdateApplicationSettingsSlot`)."""
    client = web(emulator)
    got = client.web_apps.list_application_settings_slot(RG, SITE, "staging")
    assert got.properties["SLOT_ONLY"] == "1"
    settings = dict(got.properties)
    settings["ADDED_TO_SLOT"] = "1"
    client.web_apps.update_application_settings_slot(RG, SITE, "staging", StringDictionary(properties=settings))
    assert client.web_apps.list_application_settings_slot(RG, SITE, "staging").properties["ADDED_TO_SLOT"] == "1"
    assert "ADDED_TO_SLOT" not in client.web_apps.list_application_settings(RG, SITE).properties
    slot = client.web_apps.get_slot(RG, SITE, "staging")
    assert slot.name == f"{SITE}/staging"
    with pytest.raises(ResourceNotFoundError):
        client.web_apps.list_application_settings_slot(RG, SITE, "nope")


def test_unknown_api_version_is_refused(emulator):
    from azure.mgmt.resource.resources import ResourceManagementClient

    client = ResourceManagementClient(emulator.credential("rotator-sp"), emulator.subscription_id)
    with pytest.raises(HttpResponseError) as err:
        client.resources.get_by_id(emulator.arm_id(f"Microsoft.Web/sites/{SITE}"), api_version="2099-01-01")
    assert err.value.status_code == 400
    assert err.value.error.code == "NoRegisteredProviderFound"

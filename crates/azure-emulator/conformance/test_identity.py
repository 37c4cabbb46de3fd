"""Entra v2 token endpoint (ClientSecretCredential via MSAL, default authority and discovery)
and the App Service managed-identity endpoint (ManagedIdentityCredential)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, CredentialUnavailableError, ManagedIdentityCredential

from conftest import ARM_SCOPE, GRAPH_SCOPE, VAULT_SCOPE


def test_client_secret_credential_gets_tokens_for_each_audience(emulator):
    cred = emulator.credential("rotator-sp")
    for scope in (GRAPH_SCOPE, VAULT_SCOPE, ARM_SCOPE):
        token = cred.get_token(scope)
        assert token.token, scope
        # expires_on is computed by MSAL from expires_in (a number on the v2 endpoint).
        assert token.expires_on > 0


def test_client_secret_credential_wrong_secret_is_7000215(emulator):
    app = emulator.app("payments-api")
    cred = ClientSecretCredential(emulator.tenant_id, app["appId"], "Wrong8Q~not-the-secret-at-all-000000")
    with pytest.raises(ClientAuthenticationError) as err:
        cred.get_token(GRAPH_SCOPE)
    assert "AADSTS7000215" in str(err.value)
    assert "Wrong8Q~" not in str(err.value)


def test_client_secret_credential_expired_secret_is_7000222(emulator):
    cred = emulator.credential("expired-app")
    with pytest.raises(ClientAuthenticationError) as err:
        cred.get_token(GRAPH_SCOPE)
    assert "AADSTS7000222" in str(err.value)
    assert emulator.app("expired-app")["appId"] in str(err.value)


def test_client_secret_credential_unknown_client_is_700016(emulator):
    cred = ClientSecretCredential(
        emulator.tenant_id, "9f000000-0000-4000-8000-0000000000ff", "Any8Q~value-for-an-unknown-app-00000"
    )
    with pytest.raises(ClientAuthenticationError) as err:
        cred.get_token(GRAPH_SCOPE)
    assert "AADSTS700016" in str(err.value)


def test_managed_identity_credential_gets_token(emulator, mi_env):
    mi_env("rotator-mi")
    cred = ManagedIdentityCredential()
    token = cred.get_token(VAULT_SCOPE)
    assert token.token
    # MSAL turns the string expires_on into expires_in relative to now; it must be in the future.
    import time

    assert token.expires_on > time.time()
    assert emulator.records(service="msi", status=200), "no successful request at the MSI endpoint"


def test_managed_identity_credential_wrong_identity_header_fails(emulator, mi_env):
    mi_env("rotator-mi", header="not-the-identity-header")
    cred = ManagedIdentityCredential()
    # azure-identity maps a non-token answer of the App Service endpoint to
    # CredentialUnavailableError (a ClientAuthenticationError).
    with pytest.raises(CredentialUnavailableError) as err:
        cred.get_token(GRAPH_SCOPE)
    assert "Token request error" in str(err.value)


def test_unknown_tenant_fails_tenant_discovery_with_90002(emulator):
    # MSAL discovers the tenant's openid-configuration first; Entra answers 400 AADSTS90002 for a
    # tenant it does not know; MSAL raises ValueError (chaining the discovery error) and
    # azure-identity wraps it into ClientAuthenticationError.
    cred = ClientSecretCredential(
        "0f000000-0000-4000-8000-0000000000ff",
        emulator.app("rotator-sp")["appId"],
        emulator.app("rotator-sp")["passwordCredentials"][0]["secretText"],
    )
    with pytest.raises(ClientAuthenticationError) as err:
        cred.get_token(GRAPH_SCOPE)
    chain, exc = [], err.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("90002" in text for text in chain), chain


def test_managed_identity_token_is_accepted_by_arm_and_key_vault(emulator, mi_env):
    from azure.core.exceptions import HttpResponseError
    from azure.keyvault.secrets import SecretClient
    from azure.mgmt.web import WebSiteManagementClient

    mi_env("rotator-mi")
    cred = ManagedIdentityCredential()
    assert SecretClient("https://kv-conf.vault.azure.net", cred).get_secret("payments-client-secret").value
    # rotator-mi has no ARM role: the token is accepted (not 401) and authorization says no.
    with pytest.raises(HttpResponseError) as err:
        WebSiteManagementClient(cred, emulator.subscription_id).web_apps.list_application_settings(
            "rg-conf", "func-payments"
        )
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"

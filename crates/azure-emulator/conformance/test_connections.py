"""Microsoft.Web/connections at api-version 2016-06-01 through azure-mgmt-resource's generic
by-id operations (no Python SDK has a typed client for API connections)."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.resources.models import GenericResource

API_VERSION = "2016-06-01"


def resources(emulator, principal: str = "rotator-sp") -> ResourceManagementClient:
    return ResourceManagementClient(emulator.credential(principal), emulator.subscription_id)


def connection_id(emulator, name: str = "provisionassist-kv") -> str:
    return emulator.arm_id(f"Microsoft.Web/connections/{name}")


def test_get_connection_hides_parameter_values(emulator):
    headers: dict[str, str] = {}

    def keep_headers(pipeline_response, deserialized, response_headers):
        headers.update(pipeline_response.http_response.headers)
        return deserialized

    conn = resources(emulator).resources.get_by_id(
        connection_id(emulator), api_version=API_VERSION, cls=keep_headers
    )
    # ARM reports the remaining throttling budget on every answer.
    assert any(k.lower().startswith("x-ms-ratelimit-remaining-") for k in headers), sorted(headers)
    assert conn.name == "provisionassist-kv"
    assert conn.type == "Microsoft.Web/connections"
    assert conn.location == "westeurope"
    props = conn.properties
    assert props["displayName"] == "provisionassist-kv"
    assert props["api"]["id"].endswith("/managedApis/keyvault")
    # parameterValues are write-only: never returned, the secret nowhere in the body.
    assert "parameterValues" not in props
    assert props["nonSecretParameterValues"]["vaultName"] == "kv-conf"
    # The scenario's secret is valid for payments-api.
    assert [st["status"] for st in props["statuses"]] == ["Connected"]
    assert "Pay8Q~" not in json.dumps(conn.as_dict())


def test_put_connection_with_new_secret(emulator):
    client = resources(emulator)
    current = client.resources.get_by_id(connection_id(emulator), api_version=API_VERSION)
    tenant = emulator.tenant_id
    body = GenericResource(
        location=current.location,
        properties={
            "displayName": current.properties["displayName"],
            "api": {"id": current.properties["api"]["id"]},
            "parameterValues": {
                "token:clientId": emulator.app("payments-api")["appId"],
                "token:clientSecret": "New8Q~connection-secret-value-000000",
                "token:TenantId": tenant,
                "token:grantType": "client_credentials",
            },
        },
    )
    updated = client.resources.begin_create_or_update_by_id(
        connection_id(emulator), body, api_version=API_VERSION
    ).result()
    assert updated.name == "provisionassist-kv"
    assert "parameterValues" not in updated.properties
    assert "New8Q~" not in json.dumps(updated.as_dict())
    after = client.resources.get_by_id(connection_id(emulator), api_version=API_VERSION)
    assert after.properties["api"]["id"] == current.properties["api"]["id"]
    # Write-only: only the emulator's state shows the stored secret.
    [stored] = [c for c in emulator.state()["connections"] if c["name"] == "provisionassist-kv"]
    assert stored["parameterValues"]["token:clientSecret"] == "New8Q~connection-secret-value-000000"
    # That secret is not a password of payments-api, so the connection now reports an error.
    assert [st["status"] for st in after.properties["statuses"]] == ["Error"]

    # Putting the app's real secret back makes it Connected again.
    body.properties["parameterValues"]["token:clientSecret"] = emulator.app("payments-api")[
        "passwordCredentials"
    ][0]["secretText"]
    client.resources.begin_create_or_update_by_id(connection_id(emulator), body, api_version=API_VERSION).result()
    again = client.resources.get_by_id(connection_id(emulator), api_version=API_VERSION)
    assert [st["status"] for st in again.properties["statuses"]] == ["Connected"]


def test_missing_connection_is_resource_not_found(emulator):
    with pytest.raises(ResourceNotFoundError) as err:
        resources(emulator).resources.get_by_id(connection_id(emulator, "no-such-conn"), api_version=API_VERSION)
    assert err.value.status_code == 404
    assert err.value.error.code == "ResourceNotFound"


def test_put_without_role_gets_authorization_failed(emulator):
    body = GenericResource(
        location="westeurope",
        properties={
            "displayName": "provisionassist-kv",
            "parameterValues": {"token:clientSecret": "Bad8Q~must-not-be-stored-000000000"},
        },
    )
    with pytest.raises(HttpResponseError) as err:
        resources(emulator, "reader-sp").resources.begin_create_or_update_by_id(
            connection_id(emulator), body, api_version=API_VERSION
        ).result()
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"
    assert "Bad8Q~" not in str(err.value)


def test_patch_of_properties_is_refused_as_arm_does(emulator):
    """ARM refuses PATCH inside `properties` (recorded in hashicorp/terraform-provider-azurerm);
    the 2016-06-01 spec's PATCH example changes tags only, which is accepted."""
    client = resources(emulator)
    body = GenericResource(properties={"parameterValues": {"token:clientSecret": "Bad8Q~patched-000000000000000000"}})
    with pytest.raises(HttpResponseError) as err:
        client.resources.begin_update_by_id(connection_id(emulator), body, api_version=API_VERSION).result()
    assert err.value.status_code == 400
    assert err.value.error.code == "PatchApiConnectionPropertiesNotSupported"
    assert "None of the fields inside the properties object can be patched" in err.value.error.message
    tagged = client.resources.begin_update_by_id(
        connection_id(emulator), GenericResource(tags={"team": "payments"}), api_version=API_VERSION
    ).result()
    assert tagged.tags == {"team": "payments"}
    assert [st["status"] for st in tagged.properties["statuses"]] == ["Connected"]


def test_put_with_a_parameter_the_api_does_not_define_is_refused(emulator):
    client = resources(emulator)
    current = client.resources.get_by_id(connection_id(emulator), api_version=API_VERSION)
    body = GenericResource(
        location=current.location,
        properties={"api": {"id": current.properties["api"]["id"]}, "parameterValues": {"token:clientSecert": "x"}},
    )
    with pytest.raises(HttpResponseError) as err:
        client.resources.begin_create_or_update_by_id(connection_id(emulator), body, api_version=API_VERSION).result()
    assert err.value.status_code == 400
    assert err.value.error.code == "ParameterNotDefined"


def test_managed_api_definition_names_the_secret_parameters(emulator):
    client = resources(emulator)
    current = client.resources.get_by_id(connection_id(emulator), api_version=API_VERSION)
    api = client.resources.get_by_id(current.properties["api"]["id"], api_version=API_VERSION)
    params = api.properties["connectionParameters"]
    assert params["token:clientSecret"]["type"] == "securestring"
    assert params["token:clientId"]["type"] == "string"


def test_connection_put_refused_variant(emulator):
    scenario = json.loads(json.dumps(emulator.scenario))
    scenario["uncertainties"] = {"connectionPut": "refused"}
    emulator.load_scenario(scenario)
    client = resources(emulator)
    current = client.resources.get_by_id(connection_id(emulator), api_version=API_VERSION)
    body = GenericResource(
        location=current.location,
        properties={
            "api": {"id": current.properties["api"]["id"]},
            "parameterValues": {"token:clientSecret": "New8Q~refused-variant-0000000000000"},
        },
    )
    with pytest.raises(HttpResponseError) as err:
        client.resources.begin_create_or_update_by_id(connection_id(emulator), body, api_version=API_VERSION).result()
    assert err.value.status_code == 400
    assert err.value.error.code == "PatchApiConnectionPropertiesNotSupported"

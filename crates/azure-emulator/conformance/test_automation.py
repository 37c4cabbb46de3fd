"""Microsoft.Automation variables through azure-mgmt-automation (default api-version)."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.automation import AutomationClient
from azure.mgmt.automation.models import (
    VariableCreateOrUpdateParameters,
    VariableCreateOrUpdateProperties,
    VariableUpdateParameters,
    VariableUpdateProperties,
)

RG = "rg-conf"
ACCOUNT = "aa-conf"


def automation(emulator, principal: str = "rotator-sp") -> AutomationClient:
    return AutomationClient(emulator.credential(principal), emulator.subscription_id)


def test_get_unencrypted_variable_returns_json_encoded_value(emulator):
    var = automation(emulator).variable.get(RG, ACCOUNT, "region")
    assert var.name == "region"
    assert var.properties.is_encrypted is False
    assert json.loads(var.properties.value) == "westeurope"


def test_encrypted_variable_value_is_never_returned(emulator):
    var = automation(emulator).variable.get(RG, ACCOUNT, "appSecret")
    assert var.properties.is_encrypted is True
    assert var.properties.value is None
    assert "Pay8Q~" not in json.dumps(var.as_dict())


def test_create_update_and_list_variables(emulator):
    client = automation(emulator)
    statuses: list[int] = []

    def keep_status(pipeline_response, deserialized, headers):
        # The SDK's `cls` hook sees the raw response: 201 on create, 200 on update.
        statuses.append(pipeline_response.http_response.status_code)
        return deserialized

    created = client.variable.create_or_update(
        RG,
        ACCOUNT,
        "newSecret",
        VariableCreateOrUpdateParameters(
            name="newSecret",
            properties=VariableCreateOrUpdateProperties(
                value=json.dumps("New8Q~automation-variable-value-000"),
                description="managed by rotator",
                is_encrypted=True,
            ),
        ),
        cls=keep_status,
    )
    client.variable.create_or_update(
        RG,
        ACCOUNT,
        "newSecret",
        VariableCreateOrUpdateParameters(
            name="newSecret",
            properties=VariableCreateOrUpdateProperties(
                value=json.dumps("New8Q~automation-variable-value-000"),
                description="managed by rotator",
                is_encrypted=True,
            ),
        ),
        cls=keep_status,
    )
    assert statuses == [201, 200]
    assert created.name == "newSecret"
    assert created.properties.is_encrypted is True
    assert created.properties.value is None
    assert created.properties.description == "managed by rotator"

    updated = client.variable.update(
        RG,
        ACCOUNT,
        "region",
        VariableUpdateParameters(
            name="region",
            properties=VariableUpdateProperties(value=json.dumps("northeurope"), description="moved"),
        ),
    )
    assert json.loads(updated.properties.value) == "northeurope"
    assert updated.properties.description == "moved"
    assert json.loads(client.variable.get(RG, ACCOUNT, "region").properties.value) == "northeurope"

    names = sorted(v.name for v in client.variable.list_by_automation_account(RG, ACCOUNT))
    assert names == ["appSecret", "newSecret", "region"]

    # The encrypted value is never returned by ARM; the emulator's state shows it was stored
    # JSON-encoded, as sent.
    [account] = [a for a in emulator.state()["automationAccounts"] if a["name"] == ACCOUNT]
    stored = {v["name"]: v for v in account["variables"]}
    assert json.loads(stored["newSecret"]["value"]) == "New8Q~automation-variable-value-000"
    assert stored["newSecret"]["isEncrypted"] is True


def test_missing_variable_is_resource_not_found(emulator):
    with pytest.raises(ResourceNotFoundError) as err:
        automation(emulator).variable.get(RG, ACCOUNT, "noSuchVariable")
    assert err.value.status_code == 404


def test_caller_without_role_gets_authorization_failed(emulator):
    with pytest.raises(HttpResponseError) as err:
        automation(emulator, "reader-sp").variable.create_or_update(
            RG,
            ACCOUNT,
            "appSecret",
            VariableCreateOrUpdateParameters(
                name="appSecret",
                properties=VariableCreateOrUpdateProperties(value=json.dumps("Bad8Q~must-not-be-stored-000000000")),
            ),
        )
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"
    assert "Bad8Q~" not in str(err.value)


def test_list_and_update_without_role_get_authorization_failed(emulator):
    client = automation(emulator, "reader-sp")
    with pytest.raises(HttpResponseError) as err:
        list(client.variable.list_by_automation_account(RG, ACCOUNT))
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"
    with pytest.raises(HttpResponseError) as err:
        client.variable.update(
            RG,
            ACCOUNT,
            "region",
            VariableUpdateParameters(name="region", properties=VariableUpdateProperties(value=json.dumps("x"))),
        )
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"

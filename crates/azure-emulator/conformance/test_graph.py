"""Microsoft Graph v1.0 applications through msgraph-sdk (async, kiota + httpx; default base URL
https://graph.microsoft.com/v1.0, default middleware including the retry handler)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential

from conftest import GRAPH_SCOPE, SCENARIO


def graph(emulator, principal: str = "rotator-sp") -> GraphServiceClient:
    return GraphServiceClient(credentials=emulator.credential(principal), scopes=[GRAPH_SCOPE])


async def test_get_application_by_object_id_and_app_id(emulator):
    app = emulator.app("payments-api")
    client = graph(emulator)
    by_id = await client.applications.by_application_id(app["objectId"]).get()
    assert by_id.id == app["objectId"]
    assert str(by_id.app_id) == app["appId"]
    assert by_id.display_name == "payments-api"
    [cred] = by_id.password_credentials
    assert str(cred.key_id) == app["passwordCredentials"][0]["keyId"]
    assert cred.hint == app["passwordCredentials"][0]["secretText"][:3]
    assert cred.secret_text is None
    assert cred.end_date_time == dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
    by_app_id = await client.applications_with_app_id(app["appId"]).get()
    assert by_app_id.id == app["objectId"]
    # $select limits the properties returned.
    from msgraph.generated.applications.item.application_item_request_builder import (
        ApplicationItemRequestBuilder,
    )

    slim = await client.applications.by_application_id(app["objectId"]).get(
        request_configuration=RequestConfiguration(
            query_parameters=ApplicationItemRequestBuilder.ApplicationItemRequestBuilderGetQueryParameters(
                select=["id", "displayName"]
            )
        )
    )
    assert slim.display_name == "payments-api"
    assert slim.password_credentials is None


async def test_add_password_then_token_then_remove_password(emulator):
    app = emulator.app("payments-api")
    client = graph(emulator)
    end = dt.datetime(2027, 6, 1, tzinfo=dt.timezone.utc)
    added = await client.applications.by_application_id(app["objectId"]).add_password.post(
        AddPasswordPostRequestBody(
            password_credential=PasswordCredential(display_name="rotator:conformance", end_date_time=end)
        )
    )
    assert added.secret_text and 16 <= len(added.secret_text) <= 64
    assert added.hint == added.secret_text[:3]
    assert added.display_name == "rotator:conformance"
    assert added.end_date_time == end
    assert isinstance(added.key_id, uuid.UUID)

    # The new secret works at the token endpoint (no replication delay in this scenario).
    token = ClientSecretCredential(emulator.tenant_id, app["appId"], added.secret_text).get_token(GRAPH_SCOPE)
    assert token.token

    fetched = await client.applications.by_application_id(app["objectId"]).get()
    assert {c.key_id for c in fetched.password_credentials} >= {added.key_id}
    assert all(c.secret_text is None for c in fetched.password_credentials)

    await client.applications.by_application_id(app["objectId"]).remove_password.post(
        RemovePasswordPostRequestBody(key_id=added.key_id)
    )
    after = await client.applications.by_application_id(app["objectId"]).get()
    assert added.key_id not in {c.key_id for c in after.password_credentials}

    # The generated secret never reaches the emulator's logs.
    assert added.secret_text not in emulator.full_log()
    assert added.secret_text not in json.dumps(emulator.requests())

    # A removed secret no longer authenticates.
    with pytest.raises(ClientAuthenticationError) as err:
        ClientSecretCredential(emulator.tenant_id, app["appId"], added.secret_text).get_token(GRAPH_SCOPE)
    assert "AADSTS7000215" in str(err.value)


async def test_list_applications_follows_next_links(emulator):
    client = graph(emulator, "admin-sp")
    config = RequestConfiguration(
        query_parameters=ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            top=3, select=["id", "appId", "displayName", "passwordCredentials"]
        )
    )
    page = await client.applications.get(request_configuration=config)
    pages, seen = 1, [a.display_name for a in page.value]
    while page.odata_next_link:
        assert page.odata_next_link.startswith("https://graph.microsoft.com/v1.0/applications")
        page = await client.applications.with_url(page.odata_next_link).get()
        pages += 1
        seen += [a.display_name for a in page.value]
    assert pages == 3
    assert sorted(seen) == sorted(a["displayName"] for a in SCENARIO["applications"])


async def test_add_password_on_app_not_owned_is_authorization_request_denied(emulator):
    # rotator-sp holds Application.ReadWrite.OwnedBy but does not own billing-api.
    billing = emulator.app("billing-api")
    with pytest.raises(ODataError) as err:
        await graph(emulator).applications.by_application_id(billing["objectId"]).add_password.post(
            AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="x"))
        )
    assert err.value.response_status_code == 403
    assert err.value.error.code == "Authorization_RequestDenied"


async def test_remove_password_on_app_not_owned_is_authorization_request_denied(emulator):
    billing = emulator.app("billing-api")
    with pytest.raises(ODataError) as err:
        await graph(emulator).applications.by_application_id(billing["objectId"]).remove_password.post(
            RemovePasswordPostRequestBody(key_id=uuid.UUID(billing["passwordCredentials"][0]["keyId"]))
        )
    assert err.value.response_status_code == 403
    assert err.value.error.code == "Authorization_RequestDenied"
    # And the credential is still there.
    still = await graph(emulator, "admin-sp").applications.by_application_id(billing["objectId"]).get()
    assert [str(c.key_id) for c in still.password_credentials] == [billing["passwordCredentials"][0]["keyId"]]


async def test_unknown_application_is_request_resource_not_found(emulator):
    with pytest.raises(ODataError) as err:
        await graph(emulator, "admin-sp").applications.by_application_id(
            "0a000000-0000-4000-8000-0000000000ff"
        ).get()
    assert err.value.response_status_code == 404
    assert err.value.error.code == "Request_ResourceNotFound"


async def test_list_without_graph_permission_is_authorization_request_denied(emulator):
    with pytest.raises(ODataError) as err:
        await graph(emulator, "reader-sp").applications.get()
    assert err.value.response_status_code == 403
    assert err.value.error.code == "Authorization_RequestDenied"


async def test_add_password_beyond_policy_lifetime_is_bad_request(emulator):
    # An app management policy caps password lifetime: longer requests get 400
    # CredentialInvalidLifetimeAsPerAppPolicy (azure-contracts.md 4.9).
    import copy

    scenario = copy.deepcopy(SCENARIO)
    scenario["maxPasswordLifetimeDays"] = 180
    emulator.load_scenario(scenario)
    app = emulator.app("payments-api")
    client = graph(emulator)
    now = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(ODataError) as err:
        await client.applications.by_application_id(app["objectId"]).add_password.post(
            AddPasswordPostRequestBody(
                password_credential=PasswordCredential(end_date_time=now + dt.timedelta(days=365))
            )
        )
    assert err.value.response_status_code == 400
    assert "CredentialInvalidLifetimeAsPerAppPolicy" in f"{err.value.error.code} {err.value.error.message}"
    # Within the cap it succeeds.
    ok = await client.applications.by_application_id(app["objectId"]).add_password.post(
        AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=now + dt.timedelta(days=90)))
    )
    assert ok.secret_text


async def test_owned_objects_and_filter_by_app_id(emulator):
    rotator = emulator.app("rotator-sp")
    client = graph(emulator)
    owned = await client.service_principals.by_service_principal_id(
        rotator["servicePrincipalId"]
    ).owned_objects.graph_application.get()
    names = sorted(a.display_name for a in owned.value)
    expected = sorted(
        a["displayName"] for a in SCENARIO["applications"] if "rotator-sp" in a.get("owners", [])
    )
    assert names == expected
    assert all(a.odata_type == "#microsoft.graph.application" for a in owned.value)

    payments = emulator.app("payments-api")
    config = RequestConfiguration(
        query_parameters=ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            filter=f"appId eq '{payments['appId']}'", select=["id", "appId", "displayName"]
        )
    )
    found = await graph(emulator, "admin-sp").applications.get(request_configuration=config)
    assert [a.id for a in found.value] == [payments["objectId"]]


async def test_owned_objects_of_unknown_service_principal_is_not_found(emulator):
    with pytest.raises(ODataError) as err:
        await graph(emulator, "admin-sp").service_principals.by_service_principal_id(
            "2a000000-0000-4000-8000-0000000000ff"
        ).owned_objects.get()
    assert err.value.response_status_code == 404
    assert err.value.error.code == "Request_ResourceNotFound"


async def test_managed_identity_lists_applications(emulator, mi_env):
    from azure.identity import ManagedIdentityCredential

    mi_env("rotator-mi")  # holds Application.ReadWrite.All
    client = GraphServiceClient(credentials=ManagedIdentityCredential(), scopes=[GRAPH_SCOPE])
    page = await client.applications.get()
    assert sorted(a.display_name for a in page.value) == sorted(a["displayName"] for a in SCENARIO["applications"])


async def test_add_password_defaults_to_now_plus_two_years(emulator):
    # All body properties are optional: start defaults to now, end to start + 2 years.
    app = emulator.app("orders-api")
    added = await graph(emulator).applications.by_application_id(app["objectId"]).add_password.post(
        AddPasswordPostRequestBody(password_credential=PasswordCredential())
    )
    assert added.secret_text
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((added.start_date_time - now).total_seconds()) < 300
    span = added.end_date_time - added.start_date_time
    assert dt.timedelta(days=729) <= span <= dt.timedelta(days=732)

"""The emulator's control API seen through the official SDKs: the clock, faults, scenario
loading, replication delay and the request log. Each test changes state and relies on the
autouse reset in conftest.py for isolation."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from msgraph import GraphServiceClient
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.password_credential import PasswordCredential

from conftest import GRAPH_SCOPE, SCENARIO


def _instants(doc: Any) -> list[dt.datetime]:
    """Every ISO-8601 instant found anywhere in a control-API answer (its exact shape is the
    emulator's business; the suite only needs the emulated 'now')."""
    found: list[dt.datetime] = []
    if isinstance(doc, dict):
        for v in doc.values():
            found += _instants(v)
    elif isinstance(doc, list):
        for v in doc:
            found += _instants(v)
    elif isinstance(doc, str):
        try:
            found.append(dt.datetime.fromisoformat(doc.replace("Z", "+00:00")))
        except ValueError:
            pass
    return found


def _scenario_with(**changes: Any) -> dict[str, Any]:
    scenario = copy.deepcopy(SCENARIO)
    scenario.update(changes)
    return scenario


def test_clock_advance_past_end_date_makes_secret_expired(emulator):
    scenario = _scenario_with(now="2026-01-01T00:00:00Z")
    clock_app = {
        "displayName": "clock-app",
        "objectId": "0a000000-0000-4000-8000-000000000010",
        "appId": "1a000000-0000-4000-8000-000000000010",
        "owners": ["rotator-sp"],
        "passwordCredentials": [
            {
                "keyId": "3a000000-0000-4000-8000-000000000010",
                "secretText": "Clk8Q~conformance-clock-secret-00010",
                "startDateTime": "2025-12-01T00:00:00Z",
                "endDateTime": "2026-01-02T00:00:00Z",
            }
        ],
    }
    scenario["applications"] = scenario["applications"] + [clock_app]
    emulator.load_scenario(scenario)

    before = _instants(emulator.clock())
    assert before, "GET /_emulator/clock names no instant"
    assert min(abs((t - dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) for t in before) < 3600

    secret = clock_app["passwordCredentials"][0]["secretText"]
    assert ClientSecretCredential(emulator.tenant_id, clock_app["appId"], secret).get_token(GRAPH_SCOPE).token

    emulator.advance_clock(2 * 86400)
    after = _instants(emulator.clock())
    assert max(after) - max(before) >= dt.timedelta(days=2)

    # A fresh credential (MSAL caches tokens per instance) now meets an expired secret.
    with pytest.raises(ClientAuthenticationError) as err:
        ClientSecretCredential(emulator.tenant_id, clock_app["appId"], secret).get_token(GRAPH_SCOPE)
    assert "AADSTS7000222" in str(err.value)
    assert secret not in str(err.value)


async def test_graph_429_with_retry_after_is_retried_by_the_sdk(emulator):
    emulator.add_fault(
        {
            "service": "graph",
            "operation": "addPassword",
            "nth": 1,
            "action": {"kind": "status", "status": 429, "retryAfter": 1},
        }
    )
    app = emulator.app("payments-api")
    client = GraphServiceClient(credentials=emulator.credential("rotator-sp"), scopes=[GRAPH_SCOPE])
    started = time.monotonic()
    added = await client.applications.by_application_id(app["objectId"]).add_password.post(
        AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="after-429"))
    )
    assert added.secret_text
    # The kiota retry handler honoured Retry-After (1 s) and sent the request a second time.
    assert time.monotonic() - started >= 1.0
    assert [r.get("status") for r in emulator.records(operation="addPassword")] == [429, 200]


def test_keyvault_429_with_retry_after_is_retried_by_the_sdk(emulator):
    emulator.add_fault(
        {
            "service": "keyvault",
            "operation": "setSecret",
            "nth": 1,
            "action": {"kind": "status", "status": 429, "retryAfter": 1},
        }
    )
    kv = SecretClient("https://kv-conf.vault.azure.net", emulator.credential("rotator-sp"))
    # Warm up the challenge so the faulted request is the authenticated PUT.
    kv.get_secret("payments-client-secret")
    secret = kv.set_secret("payments-client-secret", "Ret8Q~value-after-a-429-retry-0000")
    assert kv.get_secret("payments-client-secret").properties.version == secret.properties.version
    puts = emulator.records(operation="setSecret")
    assert [r.get("status") for r in puts] == [429, 200], puts


async def test_posted_scenario_is_served_through_graph(emulator):
    loaded = {
        "displayName": "loaded-by-control-api",
        "appId": "1a000000-0000-4000-8000-000000000020",
        "passwordCredentials": [
            {"secretText": "Lod8Q~loaded-through-control-api-020", "endDateTime": "2099-01-01T00:00:00Z"}
        ],
    }
    scenario = _scenario_with(applications=SCENARIO["applications"] + [loaded])
    emulator.load_scenario(scenario)
    client = GraphServiceClient(credentials=emulator.credential("admin-sp"), scopes=[GRAPH_SCOPE])
    got = await client.applications_with_app_id(loaded["appId"]).get()
    assert got.display_name == "loaded-by-control-api"
    assert len(got.password_credentials) == 1
    # The generated object id is a GUID and addresses the same application.
    same = await client.applications.by_application_id(got.id).get()
    assert str(same.app_id) == loaded["appId"]
    # Its secret authenticates.
    assert ClientSecretCredential(emulator.tenant_id, loaded["appId"], loaded["passwordCredentials"][0]["secretText"]).get_token(GRAPH_SCOPE)

    # Reloading the original scenario removes it again.
    emulator.load_scenario(SCENARIO)
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    with pytest.raises(ODataError) as err:
        await client.applications_with_app_id(loaded["appId"]).get()
    assert err.value.response_status_code == 404


async def test_replication_delay_then_clock_makes_new_secret_usable(emulator):
    emulator.control("POST", "/replication-delay", {"seconds": 120})
    app = emulator.app("payments-api")
    client = GraphServiceClient(credentials=emulator.credential("rotator-sp"), scopes=[GRAPH_SCOPE])
    added = await client.applications.by_application_id(app["objectId"]).add_password.post(
        AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="replicating"))
    )
    # Not yet replicated: the token service does not know the new secret.
    with pytest.raises(ClientAuthenticationError) as err:
        ClientSecretCredential(emulator.tenant_id, app["appId"], added.secret_text).get_token(GRAPH_SCOPE)
    assert "AADSTS7000215" in str(err.value)
    assert added.secret_text not in str(err.value)
    # The old secret keeps working meanwhile.
    old = app["passwordCredentials"][0]["secretText"]
    assert ClientSecretCredential(emulator.tenant_id, app["appId"], old).get_token(GRAPH_SCOPE).token

    emulator.advance_clock(121)
    assert ClientSecretCredential(emulator.tenant_id, app["appId"], added.secret_text).get_token(GRAPH_SCOPE).token


def test_state_reflects_sdk_writes(emulator):
    kv = SecretClient("https://kv-conf.vault.azure.net", emulator.credential("rotator-sp"))
    new = kv.set_secret("state-probe", "Sta8Q~state-probe-value-000000000000")
    state = json.dumps(emulator.control("GET", "/state"))
    assert "state-probe" in state
    assert new.properties.version in state


def test_connection_reset_on_a_get_is_retried_by_azure_core(emulator):
    from azure.mgmt.automation import AutomationClient

    emulator.add_fault({"service": "arm", "operation": "getVariable", "nth": 1, "action": {"kind": "reset"}})
    client = AutomationClient(emulator.credential("rotator-sp"), emulator.subscription_id)
    var = client.variable.get("rg-conf", "aa-conf", "region")
    assert json.loads(var.properties.value) == "westeurope"
    # The first attempt was cut off by the fault; the retry succeeded.
    gets = emulator.records(operation="getVariable")
    assert len(gets) == 2, gets
    assert gets[-1].get("status") == 200


def test_arm_503_is_retried_then_surfaces_when_persistent(emulator):
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.web import WebSiteManagementClient

    web = WebSiteManagementClient(emulator.credential("rotator-sp"), emulator.subscription_id)
    # One 503 with Retry-After: the SDK's retry gets through.
    emulator.add_fault(
        {"service": "arm", "operation": "restartSite", "nth": 1, "action": {"kind": "status", "status": 503, "retryAfter": 1}}
    )
    web.web_apps.restart("rg-conf", "func-payments")
    assert [r.get("status") for r in emulator.records(operation="restartSite")] == [503, 200]

    # A persistent 503: azure-core gives up after its retries (3 by default) with a typed error.
    emulator.clear_faults()
    emulator.mark_log_start()
    emulator.add_fault(
        {"service": "arm", "operation": "listAppSettings", "times": 10, "action": {"kind": "status", "status": 503, "retryAfter": 1}}
    )
    with pytest.raises(HttpResponseError) as err:
        web.web_apps.list_application_settings("rg-conf", "func-payments")
    assert err.value.status_code == 503
    assert [r.get("status") for r in emulator.records(operation="listAppSettings")] == [503] * 4


async def test_graph_write_quota_throttles_and_the_sdk_waits_it_out(emulator):
    # A tight per-app write quota from the scenario: the second write inside the window gets 429
    # with Retry-After; kiota waits that long (real time, as the emulated clock flows with it)
    # and the retry succeeds.
    emulator.load_scenario(_scenario_with(graphWriteQuota={"requests": 1, "windowSeconds": 2}))
    app = emulator.app("payments-api")
    client = GraphServiceClient(credentials=emulator.credential("rotator-sp"), scopes=[GRAPH_SCOPE])
    for name in ("quota-1", "quota-2"):
        added = await client.applications.by_application_id(app["objectId"]).add_password.post(
            AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name=name))
        )
        assert added.display_name == name
    assert [r.get("status") for r in emulator.records(operation="addPassword")] == [200, 429, 200]


def test_invalid_scenario_is_refused_and_state_kept(emulator):
    import urllib.error
    import urllib.request

    broken = _scenario_with(applications=[{"displayName": "x", "notAField": 1}])
    req = urllib.request.Request(
        f"{emulator.control_url}/scenario",
        data=json.dumps(broken).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(req, timeout=30)
    assert 400 <= err.value.code < 500
    assert "notAField" in err.value.read().decode(errors="replace")
    # The previous tenant is still served.
    kv = SecretClient("https://kv-conf.vault.azure.net", emulator.credential("rotator-sp"))
    assert kv.get_secret("payments-client-secret").properties.version == "0b000000000040008000000000000002"

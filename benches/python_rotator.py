#!/usr/bin/env python3
"""The rotator an administrator would otherwise write, on Microsoft's official Python SDKs: the
other side of the side-by-side bench (`BENCH_ONLY=side cargo bench --bench rotator`).

It reads the same enrolment policy as secret-rotator (`policy.json`: each credential's
application, Key Vault secret and consumers) and, for every credential whose newest password
ends within `renewBeforeDays`, does the job a careful script does, in this order:

1. Graph: read the application (`GET applications(appId='…')`: object id, current passwords);
2. Graph: `addPassword` (lifetime `lifetimeDays`);
3. Entra: prove the new secret gets a token (azure-identity `ClientSecretCredential`), retried
   while it replicates, before anything is given the new value;
4. Key Vault: `set_secret` (azure-keyvault-secrets), a new version;
5. consumers (azure-mgmt-web, azure-mgmt-resource, azure-mgmt-automation):
   - `appSettingKeyVaultReference` (versionless): refresh the site's references
     (`POST …/config/configreferences/appsettings/refresh`, documented on "Use Key Vault
     references" but with no SDK method, so sent through the client's `send_request`), then
     `get_app_setting_key_vault_reference` must name the new version, resolved;
   - `apiConnection`: `get_by_id` then a full PUT (`begin_create_or_update_by_id`, api-version
     2016-06-01: no Python SDK has a typed client for API connections) carrying the connector's
     parameters, which a script knows from its own configuration (`parameterValues` are
     write-only); the answer must say `Connected`;
   - `automationVariable`: `variable.update` (PATCH) with the JSON-encoded value;
6. Graph: `removePassword` for every password the application had before.

Graph is called with `requests` and an azure-identity token, as Graph's own Python samples for
scripts do. msgraph-sdk would be the heavier choice (asyncio-only, so each worker thread would
need its own event loop, and importing it adds about 0.3 s on the bench machine), so this one
is the kinder to the script. Every SDK client is created once and shared by the worker threads (`--threads`,
default 8; azure-core clients are thread-safe), each thread with its own Graph session. Tokens
are cached by azure-identity per scope, and Key Vault's challenge per client, as the SDKs do.

No shortcut a real script could not take: everything goes to the real Azure host names with
the SDKs' default URLs. The only bench plumbing is how those names are reached, the same two
settings secret-rotator itself takes: ROTATOR_RESOLVE (`host=ip:port,*.suffix=ip:port`, applied
at name resolution, so TLS, SNI and Host stay the real ones) and REQUESTS_CA_BUNDLE (the
emulator's CA).

Settings: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET (the rotator's own service
principal). Prints one JSON line `{"rotated": n, "skipped": n, "failed": [...]}`; exit 1 when
any credential failed. Secret values are never printed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

# ------------------------------------------------------------------ name resolution (ROTATOR_RESOLVE)


def _install_resolver(spec: str) -> None:
    """Sends the listed host names (exact, or `*.suffix`) to the given address and port."""
    exact: dict[str, tuple[str, int]] = {}
    suffixes: list[tuple[str, tuple[str, int]]] = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        host, _, addr = entry.partition("=")
        ip, _, port = addr.rpartition(":")
        if not host or not ip or not port.isdigit():
            raise SystemExit(f"ROTATOR_RESOLVE: '{entry}' is not host=ip:port")
        target = (ip.strip("[]"), int(port))
        host = host.lower().rstrip(".")
        if host.startswith("*."):
            suffixes.append((host[1:], target))
        else:
            exact[host] = target
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        name = host.decode() if isinstance(host, bytes) else host
        name = (name or "").lower().rstrip(".")
        target = exact.get(name) or next((t for s, t in suffixes if name.endswith(s)), None)
        if target is None:
            return real(host, port, family, type, proto, flags)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", target)]

    socket.getaddrinfo = getaddrinfo


if os.environ.get("ROTATOR_RESOLVE"):
    _install_resolver(os.environ["ROTATOR_RESOLVE"])

# The SDK imports are part of what the script costs, so they come after the resolver only.
import requests  # noqa: E402
from azure.core.exceptions import ClientAuthenticationError  # noqa: E402
from azure.core.rest import HttpRequest  # noqa: E402
from azure.identity import ClientSecretCredential  # noqa: E402
from azure.keyvault.secrets import SecretClient  # noqa: E402
from azure.mgmt.automation import AutomationClient  # noqa: E402
from azure.mgmt.automation.models import VariableUpdateParameters  # noqa: E402
from azure.mgmt.resource.resources import ResourceManagementClient  # noqa: E402
from azure.mgmt.resource.resources.models import GenericResource  # noqa: E402
from azure.mgmt.web import WebSiteManagementClient  # noqa: E402

GRAPH = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
CONNECTION_API = "2016-06-01"
WEB_API = "2024-11-01"
# How long a new password may take to be accepted by Entra (replication), and how often to ask.
TOKEN_CHECK_TRIES = 20
TOKEN_CHECK_PAUSE_S = 3.0


class RotationError(Exception):
    pass


def arm_parts(resource_id: str) -> dict[str, str]:
    """`/subscriptions/S/resourceGroups/RG/providers/NS/TYPE/NAME` → its named segments."""
    p = resource_id.strip("/").split("/")
    if len(p) < 8 or p[0].lower() != "subscriptions" or p[2].lower() != "resourcegroups":
        raise RotationError(f"not an ARM resource id: {resource_id}")
    return {"subscription": p[1], "group": p[3], "name": p[7]}


class Rotator:
    def __init__(self, policy: dict, tenant: str, client_id: str, secret: str):
        self.policy = policy
        self.tenant = tenant
        self.credential = ClientSecretCredential(tenant, client_id, secret)
        self._local = threading.local()
        self._vaults: dict[str, SecretClient] = {}
        self._arm: dict[str, tuple] = {}
        self._lock = threading.Lock()

    # Clients, created once and shared (per vault, per subscription).
    def vault(self, name: str) -> SecretClient:
        with self._lock:
            if name not in self._vaults:
                self._vaults[name] = SecretClient(f"https://{name}.vault.azure.net", self.credential)
            return self._vaults[name]

    def arm(self, subscription: str):
        with self._lock:
            if subscription not in self._arm:
                c = self.credential
                self._arm[subscription] = (
                    WebSiteManagementClient(c, subscription),
                    ResourceManagementClient(c, subscription),
                    AutomationClient(c, subscription),
                )
            return self._arm[subscription]

    def graph(self, method: str, path: str, body: dict | None = None) -> dict:
        session = getattr(self._local, "graph", None)
        if session is None:
            session = self._local.graph = requests.Session()
        token = self.credential.get_token(GRAPH_SCOPE).token
        r = session.request(
            method, f"{GRAPH}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        if r.status_code >= 400:
            # Graph's error code only: the body is Azure's text, kept out of the output.
            code = (r.json().get("error") or {}).get("code", "") if r.content else ""
            raise RotationError(f"Graph {method} {path.split('?')[0]} -> {r.status_code} {code}")
        return r.json() if r.content else {}

    # ------------------------------------------------------------------ one credential

    def rotate(self, cred: dict) -> str:
        days = {**self.policy.get("defaults", {}), **cred}
        app_id = cred["application"]["appId"]
        app = self.graph("GET", f"/applications(appId='{app_id}')?$select=id,passwordCredentials")
        before = app.get("passwordCredentials") or []
        newest = max((p["endDateTime"] for p in before), default=None)
        due = datetime.now(timezone.utc) + timedelta(days=days["renewBeforeDays"])
        if newest and datetime.fromisoformat(newest.replace("Z", "+00:00")) > due:
            return "skipped"
        end = datetime.now(timezone.utc) + timedelta(days=days["lifetimeDays"])
        added = self.graph(
            "POST",
            f"/applications/{app['id']}/addPassword",
            {"passwordCredential": {"displayName": "rotated", "endDateTime": end.isoformat()}},
        )
        value = added["secretText"]
        self.token_check(app_id, value)
        kv = cred["keyVault"]
        version = self.vault(kv["vault"]).set_secret(kv["secret"], value).properties.version
        for consumer in cred.get("consumers", []):
            self.update(consumer, app_id, value, version)
        for p in before:
            self.graph("POST", f"/applications/{app['id']}/removePassword", {"keyId": p["keyId"]})
        return "rotated"

    def token_check(self, app_id: str, value: str) -> None:
        check = ClientSecretCredential(self.tenant, app_id, value)
        for attempt in range(TOKEN_CHECK_TRIES):
            try:
                check.get_token(GRAPH_SCOPE)
                return
            except ClientAuthenticationError:
                if attempt + 1 == TOKEN_CHECK_TRIES:
                    raise RotationError(f"the new secret of {app_id} gets no token") from None
                time.sleep(TOKEN_CHECK_PAUSE_S)

    def update(self, consumer: dict, app_id: str, value: str, version: str) -> None:
        kind = consumer["type"]
        if kind == "appSettingKeyVaultReference":
            site = arm_parts(consumer["site"])
            web, _, _ = self.arm(site["subscription"])
            refresh = HttpRequest(
                "POST",
                f"{consumer['site']}/config/configreferences/appsettings/refresh",
                params={"api-version": WEB_API},
            )
            web.send_request(refresh).raise_for_status()
            ref = web.web_apps.get_app_setting_key_vault_reference(site["group"], site["name"], consumer["setting"])
            if ref.status != "Resolved" or ref.active_version != version:
                raise RotationError(f"{site['name']}: reference {ref.status}, version {ref.active_version}")
        elif kind == "apiConnection":
            conn = arm_parts(consumer["connection"])
            _, resources, _ = self.arm(conn["subscription"])
            current = resources.resources.get_by_id(consumer["connection"], api_version=CONNECTION_API)
            props = current.properties
            # The key vault connector's parameters; the script's own configuration knows them.
            params = {
                "token:clientId": app_id,
                "token:TenantId": self.tenant,
                "token:grantType": "client_credentials",
                consumer["parameter"]: value,
            }
            body = GenericResource(
                location=current.location,
                properties={
                    "displayName": props.get("displayName"),
                    "api": {"id": props["api"]["id"]},
                    "parameterValues": params,
                    "nonSecretParameterValues": props.get("nonSecretParameterValues", {}),
                },
            )
            put = resources.resources.begin_create_or_update_by_id(
                consumer["connection"], body, api_version=CONNECTION_API
            ).result()
            statuses = [s.get("status") for s in put.properties.get("statuses", [])]
            if statuses != ["Connected"]:
                raise RotationError(f"{conn['name']}: {statuses}")
        elif kind == "automationVariable":
            account = arm_parts(consumer["account"])
            _, _, automation = self.arm(account["subscription"])
            automation.variable.update(
                account["group"],
                account["name"],
                consumer["variable"],
                VariableUpdateParameters(name=consumer["variable"], value=json.dumps(value)),
            )
        else:
            raise RotationError(f"consumer type {kind} is not handled by this script")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", required=True, help="secret-rotator's policy.json")
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    env = os.environ
    missing = [k for k in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET") if not env.get(k)]
    if missing:
        print(f"python_rotator: missing settings: {', '.join(missing)}", file=sys.stderr)
        return 2
    with open(args.policy, encoding="utf-8") as f:
        policy = json.load(f)
    rotator = Rotator(policy, env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"])
    counts = {"rotated": 0, "skipped": 0}
    failed = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.threads)) as pool:
        futures = {pool.submit(rotator.rotate, c): c["name"] for c in policy["credentials"]}
        for fut in concurrent.futures.as_completed(futures):
            try:
                counts[fut.result()] += 1
            except Exception as e:  # noqa: BLE001 - reported per credential, by type and message
                # SDK errors carry Azure's text, never a secret value (those are only sent).
                failed.append({"credential": futures[fut], "error": f"{type(e).__name__}: {e}"[:300]})
    print(json.dumps({**counts, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

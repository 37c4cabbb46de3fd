"""Conformance harness: Microsoft's official Python SDKs as clients of the Rust Azure emulator.

What lives here:
- ``emulator`` (session fixture): starts ``target/debug/azure-emulator --scenario scenario.json``
  on ephemeral ports, reads its one-line JSON ready message, trusts its CA through a combined
  bundle (system bundle + emulator CA) and redirects the real Azure host names to it at name
  resolution, so every SDK keeps its default URLs, authority, Host header and SNI.
- ``reset_emulator`` (autouse): every test starts from the pristine scenario with no faults.
- Small helpers the tests share: credentials per scenario principal, control-API calls,
  managed-identity environment, the scenario document itself.

Why redirect at ``getaddrinfo``: it is the one place every Python HTTP stack (requests/urllib3
for azure-core and MSAL, asyncio for httpx/anyio used by msgraph) asks "where is this host",
and the sockaddr it returns carries a port, so a client that asks for 443 reaches the
emulator's ephemeral port without any URL being rewritten. anyio alone re-applies the
requested port to the resolved address, so its ``connect_tcp`` is wrapped to keep the port the
resolver chose (SNI and Host still come from the original URL).
"""

from __future__ import annotations

import copy
import json
import os
import queue
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SCENARIO_PATH = HERE / "scenario.json"
SCENARIO: dict[str, Any] = json.loads(SCENARIO_PATH.read_text())
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
READY_TIMEOUT_SECONDS = 30

# The real public host names the SDKs use by default.
EXACT_HOSTS = ("login.microsoftonline.com", "graph.microsoft.com", "management.azure.com")
VAULT_SUFFIX = ".vault.azure.net"

# Every secret value in scenario.json and in the tests contains this marker.
SECRET_MARKER = "8Q~"

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
VAULT_SCOPE = "https://vault.azure.net/.default"
ARM_SCOPE = "https://management.azure.com/.default"


# Filled from the ready line's "hosts" (exact names and "*.suffix" wildcards) on top of the
# defaults above, so a host the emulator starts serving is redirected without a harness change.
_extra_exact: set[str] = set()
_extra_suffixes: set[str] = set()


def _learn_hosts(hosts: list[str]) -> None:
    for h in hosts:
        h = h.lower().rstrip(".")
        if h.startswith("*."):
            _extra_suffixes.add(h[1:])
        elif h:
            _extra_exact.add(h)


def is_redirected(host: str | bytes | None) -> bool:
    if host is None:
        return False
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = host.lower().rstrip(".")
    if host in EXACT_HOSTS or host in _extra_exact:
        return True
    return any(host.endswith(sfx) and len(host) > len(sfx) for sfx in (VAULT_SUFFIX, *_extra_suffixes))


@dataclass
class Emulator:
    """Where the running emulator listens and what it reported in its ready line."""

    ready: dict[str, Any]
    https_port: int
    http_port: int
    control_url: str
    msi_endpoint: str
    identity_headers: dict[str, str]
    tenant_id: str
    subscription_id: str
    log_path: Path
    scenario: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SCENARIO))
    log_start: int = 0
    log_offsets: dict[str, int] = field(default_factory=dict)

    # -- control API -------------------------------------------------------------------------
    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Calls the control API; raises AssertionError with the emulator's answer on non-2xx."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.control_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        # The control API is plain HTTP on loopback; never route it through a proxy.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=30) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise AssertionError(
                f"control API {method} {path} -> {e.code}: {e.read().decode(errors='replace')}"
            ) from None
        return json.loads(text) if text.strip() else None

    def load_scenario(self, scenario: dict[str, Any]) -> None:
        self.control("POST", "/scenario", scenario)

    def clear_faults(self) -> None:
        self.control("DELETE", "/faults")

    def add_fault(self, rule: dict[str, Any]) -> None:
        self.control("POST", "/faults", rule)

    def advance_clock(self, seconds: int) -> Any:
        return self.control("POST", "/clock/advance", {"seconds": seconds})

    def clock(self) -> Any:
        return self.control("GET", "/clock")

    def requests(self) -> list[dict[str, Any]]:
        """The request log since the current test started (records carry a rising ``seq``)."""
        return [r for r in self._all_requests() if r.get("seq", 0) > self.log_start]

    def _all_requests(self) -> list[dict[str, Any]]:
        got = self.control("GET", "/requests")
        # Accept either a bare list or an envelope {"requests": [...]}.
        if isinstance(got, dict):
            got = got.get("requests", got.get("value", []))
        return list(got)

    def mark_log_start(self) -> None:
        self.log_start = max((r.get("seq", 0) for r in self._all_requests()), default=0)
        for path in self._log_paths():
            self.log_offsets[path.name] = path.stat().st_size if path.exists() else 0

    def state(self) -> dict[str, Any]:
        """The emulator's whole state, including write-only values no Azure API returns (the
        only way to check that a write-only field such as a connection secret was stored)."""
        return self.control("GET", "/state")

    def seen(self, needle: str) -> list[dict[str, Any]]:
        """Recorded requests whose JSON form mentions ``needle`` (shape-agnostic on purpose)."""
        return [r for r in self.requests() if needle in json.dumps(r)]

    def records(self, **match: Any) -> list[dict[str, Any]]:
        """Request-log records whose fields equal ``match`` (e.g. operation="addPassword");
        a ``path_contains`` key matches a substring of the path."""
        needle = match.pop("path_contains", None)
        out = []
        for r in self.requests():
            if needle is not None and needle not in str(r.get("path", "")):
                continue
            if all(r.get(k) == v for k, v in match.items()):
                out.append(r)
        return out

    # -- scenario lookups --------------------------------------------------------------------
    def app(self, display_name: str) -> dict[str, Any]:
        for app in SCENARIO["applications"]:
            if app["displayName"] == display_name:
                return app
        raise KeyError(display_name)

    def credential(self, display_name: str, secret: str | None = None):
        """A ClientSecretCredential for a scenario app, with every SDK default kept
        (authority login.microsoftonline.com, instance discovery, tenant discovery)."""
        from azure.identity import ClientSecretCredential

        app = self.app(display_name)
        if secret is None:
            secret = app["passwordCredentials"][0]["secretText"]
        return ClientSecretCredential(self.tenant_id, app["appId"], secret)

    def arm_id(self, provider_path: str, resource_group: str = "rg-conf") -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{resource_group}"
            f"/providers/{provider_path}"
        )

    def _log_paths(self) -> tuple[Path, Path]:
        return (self.log_path, self.log_path.with_name("emulator.stderr.log"))

    def full_log(self) -> str:
        """The emulator's stdout and stderr written since the current test started."""
        out = []
        for path in self._log_paths():
            try:
                with path.open("rb") as f:
                    f.seek(self.log_offsets.get(path.name, 0))
                    out.append(f.read().decode(errors="replace"))
            except OSError:
                pass
        return "\n".join(out)

    def tail_log(self, lines: int = 12) -> str:
        out = []
        for path in (self.log_path, self.log_path.with_name("emulator.stderr.log")):
            try:
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
            except OSError:
                out.append(f"(no {path.name})")
        return _ANSI.sub("", "\n".join(out))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _emulator_binary() -> Path:
    override = os.environ.get("AZURE_EMULATOR_BIN")
    return Path(override) if override else REPO / "target" / "debug" / "azure-emulator"


def _read_ready_line(proc: subprocess.Popen, log_path: Path) -> dict[str, Any]:
    """Reads stdout until the JSON ready line; everything else goes to the log file.
    A reader thread keeps draining stdout afterwards so the emulator never blocks on a pipe."""
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        with log_path.open("a") as log:
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                log.write("[stdout] " + line)
                log.flush()
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="emulator-stdout", daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"emulator printed no ready line within {READY_TIMEOUT_SECONDS}s")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            raise RuntimeError(f"emulator exited (code {proc.wait()}) before its ready line")
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if doc.get("ready") is True:
            return doc


def _port_of(hostport: str) -> int:
    return int(hostport.rsplit(":", 1)[1])


class _Redirect:
    """Installs the name-resolution redirect for the real Azure hosts (and removes it)."""

    def __init__(self, https_port: int) -> None:
        self.https_port = https_port
        self._orig_getaddrinfo = socket.getaddrinfo
        self._orig_anyio_connect_tcp = None

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        if is_redirected(host):
            return [
                (
                    socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    ("127.0.0.1", self.https_port),
                )
            ]
        return self._orig_getaddrinfo(host, port, family, type, proto, flags)

    def install(self) -> None:
        socket.getaddrinfo = self.getaddrinfo
        try:
            import anyio
        except ImportError:  # msgraph not installed: nothing else to patch
            return
        orig = anyio.connect_tcp
        self._orig_anyio_connect_tcp = orig
        https_port = self.https_port

        async def connect_tcp(remote_host, remote_port, *args, **kwargs):
            # anyio connects to (resolved address, requested port); keep the resolver's port.
            if is_redirected(remote_host):
                if kwargs.get("tls") and not kwargs.get("tls_hostname"):
                    kwargs["tls_hostname"] = str(remote_host)  # keep the real SNI
                return await orig("127.0.0.1", https_port, *args, **kwargs)
            return await orig(remote_host, remote_port, *args, **kwargs)

        anyio.connect_tcp = connect_tcp

    def uninstall(self) -> None:
        socket.getaddrinfo = self._orig_getaddrinfo
        if self._orig_anyio_connect_tcp is not None:
            import anyio

            anyio.connect_tcp = self._orig_anyio_connect_tcp


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory):
    binary = _emulator_binary()
    if not binary.exists():
        pytest.fail(f"{binary} missing: run `cargo build -p azure-emulator` (run.sh does)")
    work = tmp_path_factory.mktemp("emulator")
    log_path = work / "emulator.stdout.log"
    state_dir = work / "state"
    state_dir.mkdir()
    stderr_log = (work / "emulator.stderr.log").open("wb")
    proc = subprocess.Popen(
        [
            str(binary),
            "--scenario",
            str(SCENARIO_PATH),
            "--https-port",
            "0",
            "--http-port",
            "0",
            "--state-dir",
            str(state_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=stderr_log,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1"},
    )
    saved_env = {k: os.environ.get(k) for k in _ENV_KEYS}
    redirect = None
    try:
        try:
            ready = _read_ready_line(proc, log_path)
        except RuntimeError as e:
            stderr_log.flush()
            err = (work / "emulator.stderr.log").read_text(errors="replace")[-4000:]
            pytest.fail(f"{e}\n--- emulator stderr ---\n{err}")

        # Combined bundle: system roots stay trusted (registries), plus the emulator's CA.
        bundle = work / "ca-bundle.pem"
        ca_pem = Path(ready["caPath"]).read_text()
        system = SYSTEM_CA_BUNDLE.read_text() if SYSTEM_CA_BUNDLE.exists() else ""
        bundle.write_text(system.rstrip("\n") + "\n" + ca_pem)
        os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
        os.environ["SSL_CERT_FILE"] = str(bundle)
        os.environ.pop("CURL_CA_BUNDLE", None)
        # A proxy would bypass local name resolution and so the redirect.
        for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            os.environ.pop(key, None)
        # Managed identity variables are set per test (see mi_env), never for the session.
        os.environ.pop("IDENTITY_ENDPOINT", None)
        os.environ.pop("IDENTITY_HEADER", None)

        _learn_hosts(list(ready.get("hosts", [])))
        redirect = _Redirect(_port_of(ready["https"]))
        redirect.install()
        yield Emulator(
            ready=ready,
            https_port=_port_of(ready["https"]),
            http_port=_port_of(ready["http"]),
            control_url=ready["controlUrl"].rstrip("/"),
            msi_endpoint=ready["msiEndpoint"],
            identity_headers=dict(ready.get("identityHeaders", {})),
            tenant_id=ready["tenantId"],
            subscription_id=ready["subscriptionId"],
            log_path=log_path,
        )
    finally:
        if redirect is not None:
            redirect.uninstall()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr_log.close()


_ENV_KEYS = (
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
)


@pytest.fixture(autouse=True)
def reset_emulator(emulator: Emulator):
    """Per-test isolation: pristine scenario (also resets clock and replication delay), no faults."""
    emulator.load_scenario(SCENARIO)
    emulator.clear_faults()
    emulator.mark_log_start()
    yield
    emulator.clear_faults()
    # Every secret value this suite uses contains SECRET_MARKER; none may reach the emulator's
    # logs or its request log.
    assert SECRET_MARKER not in emulator.full_log(), "a secret value appeared in the emulator's log"
    assert SECRET_MARKER not in json.dumps(emulator.requests()), "a secret value appeared in /requests"


@pytest.fixture
def mi_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch):
    """Returns a function that points the App Service managed-identity variables at the
    emulator for one identity, for this test only."""

    def use(identity: str, header: str | None = None) -> None:
        if header is None:
            assert identity in emulator.identity_headers, (
                f"ready line has no identity header for {identity!r}: {sorted(emulator.identity_headers)}"
            )
            header = emulator.identity_headers[identity]
        monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.msi_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", header)

    return use


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tail of the emulator's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        emu = item.funcargs.get("emulator")
        if isinstance(emu, Emulator):
            report.sections.append(("emulator log (tail)", emu.tail_log()))

"""Certificates end to end through Microsoft's SDKs: azure-keyvault-certificates (create with a
Self policy, poll the pending operation, get / versions / policy), azure-keyvault-secrets (the
certificate's PEM / PFX secret), azure-keyvault-keys ``CryptographyClient.sign`` (verified
with the certificate's public key), msgraph-sdk (``PATCH keyCredentials``, ``addKey`` with a
proof signed by ``CryptographyClient``) and azure-identity ``CertificateCredential`` against the
token endpoint (MSAL's client assertion)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import CertificateCredential
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
    KeyType,
)
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import pkcs12
from msgraph import GraphServiceClient
from msgraph.generated.applications.item.add_key.add_key_post_request_body import (
    AddKeyPostRequestBody,
)
from msgraph.generated.models.application import Application
from msgraph.generated.models.key_credential import KeyCredential

from conftest import GRAPH_SCOPE

VAULT_URL = "https://kv-conf.vault.azure.net"
SELF_ISSUE_SECONDS = 3


def certs(emulator) -> CertificateClient:
    return CertificateClient(vault_url=VAULT_URL, credential=emulator.credential("rotator-sp"))


def create(emulator, name: str, policy: CertificatePolicy):
    poller = certs(emulator).begin_create_certificate(name, policy, _polling_interval=0.2)
    # The Self issuer completes on the emulated clock: move it instead of sleeping.
    emulator.advance_clock(SELF_ISSUE_SECONDS)
    return poller.result()


def rsa_policy(content_type=CertificateContentType.pkcs12, exportable=True) -> CertificatePolicy:
    return CertificatePolicy(
        issuer_name="Self",
        subject="CN=payments-api",
        key_type=KeyType.rsa,
        key_size=2048,
        exportable=exportable,
        reuse_key=False,
        content_type=content_type,
        validity_in_months=6,
    )


def test_create_poll_get_versions_and_policy(emulator):
    client = certs(emulator)
    poller = client.begin_create_certificate("conf-cert", rsa_policy(), _polling_interval=0.2)
    op = client.get_certificate_operation("conf-cert")
    assert op.status == "inProgress"
    assert op.issuer_name == "Self"
    assert op.csr
    emulator.advance_clock(SELF_ISSUE_SECONDS)
    cert = poller.result()
    assert cert.name == "conf-cert"
    assert client.get_certificate_operation("conf-cert").status == "completed"
    parsed = x509.load_der_x509_certificate(bytes(cert.cer))
    assert parsed.subject.rfc4514_string() == "CN=payments-api"
    assert cert.properties.x509_thumbprint == hashlib.sha1(bytes(cert.cer)).digest()
    got = client.get_certificate("conf-cert")
    assert got.policy.key_size == 2048 and got.policy.issuer_name == "Self"
    assert got.policy.validity_in_months == 6
    assert client.get_certificate_policy("conf-cert").content_type == CertificateContentType.pkcs12
    second = create(emulator, "conf-cert", got.policy)
    versions = {p.version for p in client.list_properties_of_certificate_versions("conf-cert")}
    assert versions == {cert.properties.version, second.properties.version}
    older = client.get_certificate_version("conf-cert", cert.properties.version)
    assert bytes(older.cer) == bytes(cert.cer)
    # The certificate's secret is a PFX with the private key of this certificate.
    secret = SecretClient(VAULT_URL, emulator.credential("rotator-sp")).get_secret(
        "conf-cert", second.properties.version
    )
    assert secret.properties.content_type == "application/x-pkcs12"
    key, leaf, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert key is not None
    assert leaf.public_bytes(serialization.Encoding.DER) == bytes(second.cer)


def test_tags_on_create_stay_on_that_version_and_update_replaces_them(emulator):
    client = certs(emulator)
    poller = client.begin_create_certificate(
        "conf-tagged", rsa_policy(), tags={"rotator-requested": "true"}, _polling_interval=0.2
    )
    emulator.advance_clock(SELF_ISSUE_SECONDS)
    first = poller.result()
    assert first.properties.tags == {"rotator-requested": "true"}
    second = create(emulator, "conf-tagged", client.get_certificate_policy("conf-tagged"))
    assert not second.properties.tags
    listed = {
        p.version: p.tags or {} for p in client.list_properties_of_certificate_versions("conf-tagged")
    }
    assert listed[first.properties.version] == {"rotator-requested": "true"}
    assert listed[second.properties.version] == {}
    updated = client.update_certificate_properties(
        "conf-tagged", first.properties.version, tags={"owner": "x", "rotator-phase": "stored"}
    )
    assert updated.properties.tags == {"owner": "x", "rotator-phase": "stored"}
    assert updated.properties.version == first.properties.version
    again = client.get_certificate_version("conf-tagged", first.properties.version)
    assert again.properties.tags == {"owner": "x", "rotator-phase": "stored"}
    with pytest.raises(HttpResponseError) as e:
        client.update_certificate_properties(
            "conf-tagged", first.properties.version, tags={f"t{i}": "v" for i in range(16)}
        )
    assert e.value.status_code == 400


def test_non_exportable_secret_has_no_private_key(emulator):
    cert = create(emulator, "conf-noexport", rsa_policy(CertificateContentType.pem, exportable=False))
    secret = SecretClient(VAULT_URL, emulator.credential("rotator-sp")).get_secret("conf-noexport")
    assert secret.properties.content_type == "application/x-pem-file"
    assert "PRIVATE KEY" not in secret.value
    assert x509.load_pem_x509_certificate(secret.value.encode()).public_bytes(
        serialization.Encoding.DER
    ) == bytes(cert.cer)


@pytest.mark.parametrize(
    "alg", [SignatureAlgorithm.rs256, SignatureAlgorithm.ps256, SignatureAlgorithm.es256]
)
def test_cryptography_client_sign_verifies_with_the_certificate(emulator, alg):
    policy = rsa_policy()
    if alg == SignatureAlgorithm.es256:
        policy = CertificatePolicy(
            issuer_name="Self", subject="CN=ec", key_type=KeyType.ec, key_curve_name="P-256"
        )
    cert = create(emulator, f"conf-sign-{alg.value.lower()}", policy)
    crypto = CryptographyClient(cert.key_id, emulator.credential("rotator-sp"))
    digest = hashlib.sha256(b"signed in the vault").digest()
    result = crypto.sign(alg, digest)
    assert result.key_id == cert.key_id
    public = x509.load_der_x509_certificate(bytes(cert.cer)).public_key()
    if alg == SignatureAlgorithm.es256:
        r = int.from_bytes(result.signature[:32], "big")
        s = int.from_bytes(result.signature[32:], "big")
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

        public.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        pad = (
            padding.PKCS1v15()
            if alg == SignatureAlgorithm.rs256
            else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        )
        public.verify(result.signature, digest, pad, Prehashed(hashes.SHA256()))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _proof(emulator, crypto: CryptographyClient, object_id: str) -> str:
    # JWTs carry the machine's time, as MSAL's do (the emulated clock is the tenant's).
    now = int(time.time())
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = _b64url(
        json.dumps(
            {"aud": "00000002-0000-0000-c000-000000000000", "iss": object_id, "nbf": now, "exp": now + 600}
        ).encode()
    )
    signed = crypto.sign(SignatureAlgorithm.rs256, hashlib.sha256(f"{header}.{claims}".encode()).digest())
    return f"{header}.{claims}.{_b64url(signed.signature)}"


async def test_certificate_credential_and_add_key_with_a_vault_signed_proof(emulator):
    app = emulator.app("payments-api")
    first = create(emulator, "conf-app-cert", rsa_policy(CertificateContentType.pem))
    graph = GraphServiceClient(credentials=emulator.credential("rotator-sp"), scopes=[GRAPH_SCOPE])
    item = graph.applications.by_application_id(app["objectId"])
    await item.patch(
        Application(
            key_credentials=[
                KeyCredential(type="AsymmetricX509Cert", usage="Verify", key=bytes(first.cer), display_name="first")
            ]
        )
    )
    # azure-identity's CertificateCredential (MSAL's client assertion) with the vault's PEM.
    pem = SecretClient(VAULT_URL, emulator.credential("rotator-sp")).get_secret("conf-app-cert").value
    token = CertificateCredential(emulator.tenant_id, app["appId"], certificate_data=pem.encode()).get_token(
        GRAPH_SCOPE
    )
    assert token.token
    # addKey: a second certificate, proven with a proof CryptographyClient signed in the vault.
    second = create(emulator, "conf-app-cert-2", rsa_policy(CertificateContentType.pem))
    crypto = CryptographyClient(first.key_id, emulator.credential("rotator-sp"))
    added = await item.add_key.post(
        AddKeyPostRequestBody(
            key_credential=KeyCredential(type="AsymmetricX509Cert", usage="Verify", key=bytes(second.cer)),
            proof=_proof(emulator, crypto, app["objectId"]),
        )
    )
    assert added.key_id
    listed = await item.get()
    assert len(listed.key_credentials) == 2
    # A certificate that is not registered is refused (AADSTS700027).
    stray = create(emulator, "conf-stray", rsa_policy(CertificateContentType.pem))
    stray_pem = SecretClient(VAULT_URL, emulator.credential("rotator-sp")).get_secret("conf-stray").value
    with pytest.raises(ClientAuthenticationError) as e:
        CertificateCredential(emulator.tenant_id, app["appId"], certificate_data=stray_pem.encode()).get_token(
            GRAPH_SCOPE
        )
    assert "AADSTS700027" in str(e.value)

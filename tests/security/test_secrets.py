"""Secrets: API keys and SMTP passwords stored only as hashes and compared in constant time; DKIM private keys
encrypted at rest and returned by nothing; SMTP AUTH guessing locked out per address and per username."""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import ssl

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts import secrets as account_secrets
from accounts.models import ApiKey, Membership, SmtpCredential
from accounts.services import (
    api_key_create,
    ses_access_key_issue,
    smtp_credential_authenticate,
    smtp_credential_create,
)
from mail.crypto import decrypt
from sending.models import DkimKey
from sending.smtp import auth_limits


def _row_values(model, pk) -> list[str]:  # type: ignore[no-untyped-def]
    """Every column of one row as the database holds it (not through the model)."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [pk])  # noqa: S608 - a model's own table name
        return [str(v) for v in cursor.fetchone()]


@pytest.mark.django_db
def test_api_key_is_stored_only_as_a_hash(organization):
    api_key, secret = api_key_create(organization=organization, name="ci")
    values = _row_values(ApiKey, api_key.pk)
    assert not any(secret in v for v in values)
    assert hashlib.sha256(secret.encode()).hexdigest() in values


@pytest.mark.django_db
def test_smtp_password_is_stored_only_as_a_hash(organization):
    credential, password = smtp_credential_create(organization=organization, name="app")
    values = _row_values(SmtpCredential, credential.pk)
    assert not any(password in v for v in values)
    assert hashlib.sha256(password.encode()).hexdigest() in values


@pytest.fixture
def compare_calls(monkeypatch) -> list[tuple[str, str]]:
    """Records every comparison made through hmac.compare_digest by the secrets module (and still compares)."""
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def recording(a, b):  # type: ignore[no-untyped-def]
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(account_secrets.hmac, "compare_digest", recording)
    return calls


@pytest.mark.django_db
def test_api_keys_are_compared_in_constant_time(organization, compare_calls):
    api_key, secret = api_key_create(organization=organization, name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret[:-4]}AAAA")  # right prefix, wrong secret
    assert client.get("/api/v1/events").status_code == 401
    assert compare_calls == [(hashlib.sha256(f"{secret[:-4]}AAAA".encode()).hexdigest(), api_key.key_hash)]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/events").status_code == 200
    assert len(compare_calls) == 2


@pytest.mark.django_db
def test_smtp_passwords_are_compared_in_constant_time(organization, compare_calls):
    credential, password = smtp_credential_create(organization=organization, name="app")
    assert smtp_credential_authenticate(username=credential.username, password="nope", peer_ip="127.0.0.1") is None
    assert smtp_credential_authenticate(username=credential.username, password=password, peer_ip="127.0.0.1")
    assert [b for _, b in compare_calls] == [credential.password_hash] * 2


# --- DKIM private keys --------------------------------------------------------------------------------------


def _pem_body_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


@pytest.mark.django_db
def test_dkim_private_keys_are_encrypted_at_rest(domain):
    keys = list(domain.dkim_keys.all())
    assert keys
    for key in keys:
        stored = " ".join(_row_values(DkimKey, key.pk))
        pem = decrypt(key.private_key_encrypted)
        assert b"PRIVATE KEY" in pem
        assert "PRIVATE KEY" not in stored
        assert not any(line in stored for line in _pem_body_lines(pem))


@pytest.mark.django_db
def test_dkim_private_keys_are_returned_by_no_api_page_or_admin(api, domain, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    created = api.post("/api/v1/domains", {"name": "news.acme.example", "dkim_ed25519": True}, format="json")
    assert created.status_code == 201, created.content
    other_id = created.json()["id"]
    assert api.post(f"/api/v1/domains/{domain.pk}/rotate-dkim").status_code == 201
    secrets_at_rest = []
    for key in DkimKey.objects.all():
        secrets_at_rest.append(key.private_key_encrypted)
        secrets_at_rest.extend(_pem_body_lines(decrypt(key.private_key_encrypted)))
    bodies = [created.content.decode()]
    for path in ("/api/v1/domains", f"/api/v1/domains/{domain.pk}", f"/api/v1/domains/{other_id}", "/api/schema/"):
        response = api.get(path)
        assert response.status_code == 200, path
        bodies.append(response.content.decode())
    assert "private" not in bodies[-1].lower()  # the schema names no private-key field at all

    user = get_user_model().objects.create_superuser("root", "root@ops.example", "pw")
    Membership.objects.create(organization=domain.organization, user=user, role="owner")
    browser = Client()
    browser.force_login(user)
    org = domain.organization_id
    for path in (
        f"/o/{org}/domains/",
        f"/o/{org}/domains/{domain.pk}/",
        f"/admin/sending/domain/{domain.pk}/change/",
        "/admin/sending/domain/",
    ):
        response = browser.get(path)
        assert response.status_code == 200, path
        bodies.append(response.content.decode())
    leaks = [s[:20] for s in secrets_at_rest for body in bodies if s in body]
    assert not leaks


# --- SMTP AUTH guessing -------------------------------------------------------------------------------------


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def try_login(server, username: str, password: str, source_ip: str) -> int:
    host, port = server.bound["submissions"]
    with smtplib.SMTP_SSL(host, port, timeout=30, context=_unverified(), source_address=(source_ip, 0)) as client:
        client.ehlo("client.example")
        client.user, client.password = username, password
        try:  # one mechanism: login() would try PLAIN and then LOGIN, two failures per call
            return client.auth("PLAIN", client.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


@pytest.fixture
def clean_limits(credential):  # type: ignore[no-untyped-def]
    ips = [f"127.0.0.{n}" for n in range(20, 40)]

    def reset() -> None:
        for ip in ips:
            auth_limits.reset(ip, None)
        auth_limits.reset(None, credential[0])
        for n in range(8):
            auth_limits.reset(None, f"guess-{n}")

    reset()
    yield
    reset()


@pytest.mark.django_db(transaction=True)
def test_smtp_auth_guessing_from_one_address_locks_that_address(smtp_server, credential, clean_limits, settings):
    assert settings.POSTWERK_SMTP_AUTH_MAX_FAILURES == 4
    username, password = credential
    codes = [try_login(smtp_server, f"guess-{n}", "wrong", "127.0.0.21") for n in range(4)]
    assert codes == [535, 535, 535, 535]
    # Locked: even the right password is not checked, so a lucky guess teaches nothing.
    assert try_login(smtp_server, username, password, "127.0.0.21") == 454
    assert try_login(smtp_server, username, password, "127.0.0.22") == 235


@pytest.mark.django_db(transaction=True)
def test_smtp_auth_guessing_one_username_from_many_addresses_locks_the_username(smtp_server, credential, clean_limits):
    username, password = credential
    codes = [try_login(smtp_server, username, "wrong", f"127.0.0.{30 + n}") for n in range(4)]
    assert codes == [535, 535, 535, 535]
    assert try_login(smtp_server, username, password, "127.0.0.35") == 454
    auth_limits.reset(None, username)
    assert try_login(smtp_server, username, password, "127.0.0.36") == 235


# --- SES access keys (SigV4 needs the secret back: encrypted, not hashed) ------------------------------------


@pytest.mark.django_db
def test_ses_secret_access_key_is_encrypted_at_rest_and_shown_nowhere(organization, api, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    api_key, _ = api_key_create(organization=organization, name="ses")
    access_key_id, secret = ses_access_key_issue(api_key=api_key)
    stored = " ".join(_row_values(ApiKey, api_key.pk))
    assert access_key_id in stored and secret not in stored
    assert decrypt(ApiKey.objects.get(pk=api_key.pk).ses_secret_encrypted).decode() == secret
    listed = api.get("/api/v1/api-keys").content.decode()
    assert access_key_id in listed and secret not in listed
    operator = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    admin = Client()
    admin.force_login(operator)
    page = admin.get(f"/admin/accounts/apikey/{api_key.pk}/change/")
    assert page.status_code == 200
    assert secret not in page.content.decode() and "ses_secret_encrypted" not in page.content.decode()


@pytest.mark.django_db
def test_ses_signatures_are_compared_in_constant_time(organization, monkeypatch):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from sending.compat.ses import signature

    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest
    monkeypatch.setattr(signature.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    api_key, _ = api_key_create(organization=organization, name="ses")
    access_key_id, secret = ses_access_key_issue(api_key=api_key)
    request = AWSRequest(method="GET", url="http://testserver/v2/email/suppression/addresses")
    SigV4Auth(Credentials(access_key_id, secret + "x"), "ses", "eu-central-1").add_auth(request)
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in request.headers.items()}
    answer = Client().get("/v2/email/suppression/addresses", HTTP_HOST="testserver", **headers)
    assert (answer.status_code, answer["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
    ((computed, given),) = calls
    assert given == request.headers["Authorization"].rsplit("Signature=", 1)[1] and computed != given

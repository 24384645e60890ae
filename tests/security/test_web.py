"""The web side: DEBUG off and secure cookies on outside embedded development, security headers on every
dashboard page, CSRF on every form, and log-in guessing answered 429."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import Membership

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/unused",
    "SECRET_KEY": "s" * 50,
    "POSTWERK_ENCRYPTION_KEY": "a passphrase",
    "POSTWERK_SMTP_TLS_CERT": "/nonexistent.crt",
    "POSTWERK_SMTP_TLS_KEY": "/nonexistent.key",
}


def settings_in_subprocess(tmp_path: Path, **env: str) -> dict:
    """Import the settings in a fresh process with a clean environment (no .env either: an empty data dir)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTWERK_", "DATABASE_", "DEBUG", "SECRET"))}
    clean.update({"POSTWERK_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings", **env})
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({'debug': s.DEBUG, "
        "'session': s.SESSION_COOKIE_SECURE, 'csrf': s.CSRF_COOKIE_SECURE, 'httponly': s.SESSION_COOKIE_HTTPONLY}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_debug_is_off_and_cookies_secure_by_default_in_production(tmp_path):
    assert settings_in_subprocess(tmp_path, **PRODUCTION) == {
        "debug": False,
        "session": True,
        "csrf": True,
        "httponly": True,
    }


def test_embedded_development_keeps_debug_off_and_allows_plain_http_cookies(tmp_path):
    # `make run` serves http://127.0.0.1:8000: secure cookies would make logging in impossible there.
    assert settings_in_subprocess(tmp_path) == {"debug": False, "session": False, "csrf": False, "httponly": True}
    assert settings_in_subprocess(tmp_path, **PRODUCTION, POSTWERK_SECURE_COOKIES="false")["session"] is False


@pytest.fixture
def owner_client(organization, settings) -> Client:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = get_user_model().objects.create_user("web-owner", password="pw-web-owner-1")
    Membership.objects.create(organization=organization, user=user, role="owner")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def assert_security_headers(response) -> None:  # type: ignore[no-untyped-def]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_dashboard_pages_send_security_headers(owner_client, organization):
    assert_security_headers(Client().get("/login/"))
    for path in ("domains/", "messages/", "suppressions/", "keys/", "webhooks/", "members/"):
        response = owner_client.get(f"/o/{organization.pk}/{path}")
        assert response.status_code == 200, path
        assert_security_headers(response)


@pytest.mark.django_db
def test_forms_without_a_csrf_token_are_refused(owner_client, organization):
    for path in ("domains/add", "suppressions/add", "keys/api", "members/add", "webhooks/add"):
        response = owner_client.post(f"/o/{organization.pk}/{path}", {"name": "evil.example"})
        assert response.status_code == 403, path
    assert not organization.api_keys.exists() and not organization.domains.exists()
    login = Client(enforce_csrf_checks=True).post("/login/", {"username": "web-owner", "password": "pw-web-owner-1"})
    assert login.status_code == 403


@pytest.mark.django_db
def test_dashboard_login_guessing_is_answered_429(settings):
    from dashboard import login_limits

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.POSTWERK_LOGIN_MAX_FAILURES = 3
    get_user_model().objects.create_user("guessed", password="the-right-one-42")
    ip = "127.0.0.78"
    login_limits.reset(ip, "guessed")
    client = Client(REMOTE_ADDR=ip)
    try:
        codes = [client.post("/login/", {"username": "guessed", "password": f"no-{n}"}).status_code for n in range(3)]
        assert codes == [200, 200, 200]  # the form again, with an error
        locked = client.post("/login/", {"username": "guessed", "password": "the-right-one-42"})
        assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
        assert "_auth_user_id" not in client.session
    finally:
        login_limits.reset(ip, "guessed")

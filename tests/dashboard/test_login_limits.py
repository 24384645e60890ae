"""Log-in brute force: failures per username and per client address lock with 429 and a clear message."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from dashboard import login_limits
from tests.dashboard.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_limits(settings) -> None:
    settings.POSTWERK_LOGIN_MAX_FAILURES = 3
    settings.POSTWERK_LOGIN_MAX_FAILURES_PER_IP = 6
    settings.POSTWERK_LOGIN_FAILURE_WINDOW = 900


def attempt(username: str, password: str, ip: str = "127.0.0.50", **headers: str):  # type: ignore[no-untyped-def]
    client = Client(REMOTE_ADDR=ip, **headers)
    return client.post(reverse("dashboard:login"), {"username": username, "password": password})


def test_a_username_locks_after_its_failures_even_for_the_right_password(owner):
    for _ in range(3):
        assert attempt("owner", "wrong").status_code == 200
    locked = attempt("owner", PASSWORD)
    assert locked.status_code == 429
    assert b"Too many failed log-in attempts" in locked.content and b"Try again in" in locked.content
    assert 0 < int(locked["Retry-After"]) <= 900
    assert "_auth_user_id" not in locked.wsgi_request.session
    # The lock is the username's, whatever the address (and the case) it is tried from.
    assert attempt("OWNER", PASSWORD, ip="127.0.0.51").status_code == 429


def test_an_address_locks_after_failures_across_usernames(owner, make_user):
    make_user("someone")
    for n in range(6):
        assert attempt(f"guess{n}", "wrong").status_code == 200
    assert attempt("owner", PASSWORD).status_code == 429
    # Another address is not affected.
    assert attempt("owner", PASSWORD, ip="127.0.0.52").status_code == 302


def test_success_clears_the_usernames_count_but_not_the_addresses(owner):
    for _ in range(2):
        attempt("owner", "wrong")
    assert attempt("owner", PASSWORD).status_code == 302
    for _ in range(2):
        attempt("owner", "wrong")
    assert attempt("owner", PASSWORD).status_code == 302  # 2 + 2 failures: the success in between reset it
    assert login_limits.locked_for("127.0.0.50", "") == 0
    for _ in range(2):
        attempt("nobody", "wrong")
    assert login_limits.locked_for("127.0.0.50", "") > 0  # the address kept all six


def test_the_lock_ends_with_its_window(owner, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(login_limits.time, "time", lambda: clock[0])
    for _ in range(3):
        attempt("owner", "wrong")
    assert attempt("owner", PASSWORD).status_code == 429
    clock[0] += 900
    assert attempt("owner", PASSWORD).status_code == 302


def test_forwarded_for_is_used_only_when_trusted(owner, settings):
    for n in range(6):
        attempt(f"guess{n}", "wrong", ip="10.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.60")
    # Untrusted: the proxy's address took the failures.
    assert attempt("owner", PASSWORD, ip="10.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.61").status_code == 429
    settings.POSTWERK_LOGIN_TRUST_X_FORWARDED_FOR = True
    assert attempt("owner", PASSWORD, ip="10.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.61").status_code == 302
    for n in range(6):
        attempt(f"guess{n}", "wrong", ip="10.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.62")
    assert attempt("owner", PASSWORD, ip="10.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.62").status_code == 429


def test_ipv6_clients_are_counted_per_64():
    class Request:
        META = {"REMOTE_ADDR": "2001:db8:1:2::1"}

    assert login_limits.client_ip(Request()) == "2001:db8:1:2::/64"  # type: ignore[arg-type]


def test_the_admin_login_is_guarded_too(make_user):
    make_user("operator", staff=True)
    client = Client(REMOTE_ADDR="127.0.0.70")
    for _ in range(3):
        assert client.post("/admin/login/", {"username": "operator", "password": "wrong"}).status_code == 200
    locked = client.post("/admin/login/", {"username": "operator", "password": PASSWORD})
    assert locked.status_code == 429 and "Retry-After" in locked
    assert attempt("operator", PASSWORD).status_code == 429  # one count for both forms

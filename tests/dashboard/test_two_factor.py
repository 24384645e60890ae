"""Two-factor sign-in over HTTP: enrolment with a QR code, the code asked after the password on every page (the
admin included), recovery codes, replay and throttling, and an organization that requires it of its members.
Codes are computed with django-otp's own TOTP implementation, as an authenticator app would."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.dashboard.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def current_code(device: TOTPDevice, *, step_offset: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + step_offset * device.step
    return f"{totp.token():0{device.digits}d}"


def password_login(username: str) -> Client:
    client = Client()
    response = client.post("/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content
    return client


def enrol(client: Client, user) -> list[str]:  # type: ignore[no-untyped-def]
    page = client.get("/account/two-factor/")
    assert page.status_code == 200
    assert b'src="data:image/svg+xml' in page.content  # the QR code, inline: nothing fetched from elsewhere
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert device.config_url.startswith("otpauth://totp/Postwerk%3A")
    response = client.post("/account/two-factor/confirm", {"code": current_code(device)})
    assert response.status_code == 201, response.content
    codes = list(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    assert len(codes) == 10 and all(code.encode() in response.content for code in codes)
    return codes


@pytest.fixture(autouse=True)
def slow_throttle(settings):
    # django-otp makes the next try wait 2^(failures-1) × this many seconds: large, so a test never races it.
    settings.OTP_TOTP_THROTTLE_FACTOR = 1000
    settings.OTP_STATIC_THROTTLE_FACTOR = 1000


def test_enrolment_then_every_page_asks_for_the_code_after_the_password(owner, organization):
    client = password_login("owner")
    enrol(client, owner)
    assert TOTPDevice.objects.get(user=owner).confirmed
    # The enrolling session proved the second factor: it goes on.
    assert client.get(f"/o/{organization.pk}/").status_code == 200

    later = password_login("owner")
    for path in (f"/o/{organization.pk}/", f"/o/{organization.pk}/keys/", "/admin/", "/"):
        response = later.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/login/verify/?next="), path

    device = TOTPDevice.objects.get(user=owner)
    keys = f"/o/{organization.pk}/keys/"
    response = later.post("/login/verify/", {"code": current_code(device, step_offset=1), "next": keys})
    assert (response.status_code, response["Location"]) == (302, keys)
    assert later.get(f"/o/{organization.pk}/").status_code == 200
    assert password_login("owner").post("/login/verify/", {"code": "000000", "next": "/"}).status_code == 400
    # The API is never behind the gate: it authenticates with keys.
    assert later.get("/api/v1/messages").status_code == 401


def test_a_code_works_once_and_a_wrong_one_makes_the_next_try_wait(owner):
    enrol(password_login("owner"), owner)
    device = TOTPDevice.objects.get(user=owner)
    code = current_code(device, step_offset=1)
    first = password_login("owner")
    assert first.post("/login/verify/", {"code": code}).status_code == 302
    replay = password_login("owner")
    assert replay.post("/login/verify/", {"code": code}).status_code == 400  # RFC 6238 §5.2: no replay

    throttled = password_login("owner")
    assert throttled.post("/login/verify/", {"code": "123456"}).status_code == 400
    # Even the right code now waits out the throttle.
    assert throttled.post("/login/verify/", {"code": current_code(device, step_offset=2)}).status_code == 400


def test_a_recovery_code_signs_in_once(owner, organization):
    codes = enrol(password_login("owner"), owner)
    client = password_login("owner")
    assert client.post("/login/verify/", {"code": codes[0].upper()}).status_code == 302
    assert client.get(f"/o/{organization.pk}/").status_code == 200
    assert password_login("owner").post("/login/verify/", {"code": codes[0]}).status_code == 400
    assert StaticToken.objects.filter(device__user=owner).count() == 9


def test_renewing_recovery_codes_and_turning_two_factor_off_need_a_code(owner):
    client = password_login("owner")
    old = enrol(client, owner)
    device = TOTPDevice.objects.get(user=owner)
    assert client.post("/account/two-factor/", {"action": "renew"}).status_code == 400  # no code, no change
    response = client.post("/account/two-factor/", {"action": "renew", "code": current_code(device, step_offset=1)})
    assert response.status_code == 201
    new = set(StaticToken.objects.filter(device__user=owner).values_list("token", flat=True))
    assert len(new) == 10 and not new & set(old)
    response = client.post("/account/two-factor/", {"action": "disable", "code": sorted(new)[0]})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=owner).exists()


def test_an_organization_requiring_two_factor_sends_members_without_it_to_enrolment(owner, member, organization):
    developer = member("developer")
    owner_client = password_login("owner")
    # Only owners and admins change it.
    dev_client = password_login("developer")
    assert dev_client.post(f"/o/{organization.pk}/members/two-factor", {"require_two_factor": "on"}).status_code == 403
    response = owner_client.post(f"/o/{organization.pk}/members/two-factor", {"require_two_factor": "on"})
    assert response.status_code == 302
    organization.refresh_from_db()
    assert organization.require_two_factor

    for path in (f"/o/{organization.pk}/", f"/o/{organization.pk}/messages/", "/"):
        response = dev_client.get(path)
        assert (response.status_code, response["Location"]) == (302, "/account/two-factor/"), path
    page = dev_client.get("/account/two-factor/")
    assert b"requires two-factor" in page.content
    enrol(dev_client, developer)
    assert dev_client.get(f"/o/{organization.pk}/messages/").status_code == 200
    # While required, it cannot be turned off.
    device = TOTPDevice.objects.get(user=developer)
    response = dev_client.post(
        "/account/two-factor/", {"action": "disable", "code": current_code(device, step_offset=1)}
    )
    assert response.status_code == 400 and TOTPDevice.objects.filter(user=developer).exists()


def test_the_verify_page_never_redirects_off_site(owner):
    enrol(password_login("owner"), owner)
    device = TOTPDevice.objects.get(user=owner)
    client = password_login("owner")
    response = client.post(
        "/login/verify/", {"code": current_code(device, step_offset=1), "next": "https://evil.example/"}
    )
    assert (response.status_code, response["Location"]) == (302, "/")

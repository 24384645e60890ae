"""Provisioning, and secrets stored the way they must be: API keys hashed, DKIM keys encrypted."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import ApiKey, Organization
from mail.crypto import decrypt
from sending.models import DkimKey, Domain

pytestmark = pytest.mark.django_db


def provision(*args: str) -> dict:
    out = StringIO()
    call_command("provision", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_provision_prints_what_an_operator_needs():
    result = provision("--org", "Acme", "--domain", "acme.example")
    assert result["organization"]["name"] == "Acme"
    assert result["domain"] == "acme.example"
    assert result["api_key"].startswith("pwk_")
    records = {record["purpose"]: record for record in result["dns_records"]}
    assert set(records) == {"ownership", "dkim", "return_path", "spf", "dmarc"}
    assert records["dkim"]["type"] == "TXT"
    assert records["dkim"]["name"].endswith("._domainkey.acme.example")
    assert records["dkim"]["value"].startswith("v=DKIM1; k=rsa; p=")
    assert records["ownership"]["value"].startswith("postwerk-verification=")
    assert records["return_path"] == {
        "purpose": "return_path",
        "type": "CNAME",
        "name": "pm-bounces.acme.example",
        "value": "bounces.postwerk.example",
        "note": records["return_path"]["note"],
    }
    assert result["verified"] == {"acme.example": False}


def test_provision_twice_reuses_organization_domain_and_key():
    first = provision("--org", "Acme", "--domain", "acme.example")
    second = provision("--org", "Acme", "--domain", "ACME.example.")
    assert Organization.objects.count() == 1
    assert Domain.objects.count() == 1
    assert DkimKey.objects.count() == 1
    assert first["dns_records"] == second["dns_records"]
    assert first["api_key"] != second["api_key"]  # a new secret each time: the old one is never shown again
    assert ApiKey.objects.count() == 2


def test_provision_refuses_another_organizations_domain():
    provision("--org", "Acme", "--domain", "acme.example")
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="another organization"):
        provision("--org", "Other", "--domain", "acme.example")


def test_api_key_is_stored_hashed():
    secret = provision("--org", "Acme", "--domain", "acme.example")["api_key"]
    key = ApiKey.objects.get()
    assert secret not in (key.key_hash, key.prefix)
    assert key.prefix in secret


def test_dkim_private_key_is_encrypted_at_rest():
    provision("--org", "Acme", "--domain", "acme.example")
    key = DkimKey.objects.get()
    assert "PRIVATE KEY" not in key.private_key_encrypted
    assert b"BEGIN PRIVATE KEY" in decrypt(key.private_key_encrypted)


def test_provision_adds_an_smtp_credential():
    result = provision("--org", "Acme", "--domain", "acme.example", "--smtp-credential", "app")
    assert result["smtp_username"].startswith("pw-")
    from accounts.models import SmtpCredential

    credential = SmtpCredential.objects.get()
    assert result["smtp_password"] not in credential.password_hash
    again = provision("--org", "Acme", "--domain", "acme.example", "--smtp-credential", "app")
    assert again["smtp_username"] != result["smtp_username"]


def test_smtp_credentials_api_create_list_revoke_scoped(api, client, domain):
    response = api.post(
        "/api/v1/smtp-credentials",
        {"name": "app", "allowed_domains": ["acme.example"], "allowed_networks": ["10.0.0.0/8"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["password"] and body["username"].startswith("pw-")
    assert body["allowed_domains"] == ["acme.example"]
    listing = api.get("/api/v1/smtp-credentials").json()
    assert [c["name"] for c in listing] == ["app"] and "password" not in listing[0]
    assert api.post("/api/v1/smtp-credentials", {"name": "app"}, format="json").status_code == 400
    bad = api.post("/api/v1/smtp-credentials", {"name": "x", "allowed_networks": ["nope"]}, format="json")
    assert bad.status_code == 400 and "allowed_networks" in bad.json()["fields"]
    bad = api.post("/api/v1/smtp-credentials", {"name": "y", "allowed_domains": ["bank.example"]}, format="json")
    assert bad.status_code == 400 and "allowed_domains" in bad.json()["fields"]

    from accounts.services import api_key_create, organization_get_or_create

    other, _ = organization_get_or_create(name="Other")
    _, secret = api_key_create(organization=other, name="k")
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    assert client.get(f"/api/v1/smtp-credentials/{body['id']}").status_code == 404
    assert client.delete(f"/api/v1/smtp-credentials/{body['id']}").status_code == 404

    revoked = api.delete(f"/api/v1/smtp-credentials/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["active"] is False

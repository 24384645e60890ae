"""Provisioning, and secrets stored the way they must be: API keys hashed, DKIM keys encrypted."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import ApiKey, Organization
from sending.crypto import decrypt
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
    [record] = result["dns_records"]
    assert record["type"] == "TXT"
    assert record["name"].endswith("._domainkey.acme.example")
    assert record["value"].startswith("v=DKIM1; k=rsa; p=")


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

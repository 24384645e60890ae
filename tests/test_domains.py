"""Sender domains end to end: the API, verification from a real DNS server, rotation, the send-time guards."""

from __future__ import annotations

import io
import json

import dkim
import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.services import api_key_create, organization_get_or_create, smtp_credential_create
from sending.domains.service import domain_get_or_create
from sending.domains.verification import domain_verify, domains_due
from sending.intake.smtp_intake import Refused, smtp_message_submit
from sending.models import DkimKey, Domain, Event, EventType, Message
from tests.conftest import add_mx_domain, deliver_queued, publish_records
from tests.test_delivery import dns_txt

pytestmark = pytest.mark.django_db(transaction=True)

SEND = {"from": "app@acme.example", "to": ["jane@dest.example"], "subject": "Hi", "text": "Hello"}


def records_by_purpose(body: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for record in body["dns_records"]:
        out.setdefault(record["purpose"], []).append(record)
    return out


def test_added_domain_lists_its_records_and_cannot_send_until_verified(api, zone, organization, domain):
    response = api.post("/api/v1/domains", {"name": "New.Example"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "new.example" and body["verified"] is False
    records = records_by_purpose(body)
    assert records["ownership"][0]["value"].startswith("postwerk-verification=")
    assert records["dkim"][0]["name"].endswith("._domainkey.new.example")
    assert records["return_path"][0] == {
        "purpose": "return_path",
        "type": "CNAME",
        "name": "pm-bounces.new.example",
        "value": "bounces.postwerk.example",
        "note": records["return_path"][0]["note"],
    }
    assert records["spf"][0]["value"].startswith("v=spf1 include:")
    assert records["dmarc"][0]["value"].startswith("v=DMARC1; p=none")

    refused = api.post("/api/v1/messages", {**SEND, "from": "app@new.example"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"] == "domain_unverified"
    assert "postwerk-verification=" in refused.json()["fields"]["from"][0]
    assert not Message.objects.exists()

    new = Domain.objects.get(name="new.example")
    publish_records(zone, new)
    verified = api.post(f"/api/v1/domains/{new.pk}/verify").json()
    assert verified["verified"] is True
    checks = {c["name"]: c for c in verified["checks"]}
    assert checks["ownership"]["status"] == "ok"
    assert checks["return_path"]["status"] == "ok"
    assert [c["status"] for name, c in checks.items() if name.startswith("dkim:")] == ["ok"]
    assert Event.objects.filter(domain=new, type=EventType.DOMAIN_VERIFIED).count() == 1
    assert api.post("/api/v1/messages", {**SEND, "from": "app@new.example"}, format="json").status_code == 202


def test_domains_are_scoped_to_their_organization(api, zone, domain):
    other_org, _ = organization_get_or_create(name="Other")
    theirs, _ = domain_get_or_create(organization=other_org, name="theirs.example")
    assert [d["name"] for d in api.get("/api/v1/domains").json()] == ["acme.example"]
    assert api.get(f"/api/v1/domains/{theirs.pk}").status_code == 404
    assert api.post(f"/api/v1/domains/{theirs.pk}/verify").status_code == 404
    assert api.delete(f"/api/v1/domains/{theirs.pk}").status_code == 404
    taken = api.post("/api/v1/domains", {"name": "theirs.example"}, format="json")
    assert taken.status_code == 409 and "name" in taken.json()["fields"]
    bad = api.post("/api/v1/domains", {"name": "not a domain"}, format="json")
    assert bad.status_code == 400 and "name" in bad.json()["fields"]


def test_a_dns_timeout_changes_nothing_and_a_removed_record_emits_one_broken_event(zone, domain, settings):
    settings.POSTWERK_DNS_TIMEOUT = 0.5
    key = domain.dkim_keys.get()
    zone.drop(key.record_name)
    checks = {c.name: c for c in domain_verify(domain=domain)}
    dkim_check = checks[f"dkim:{key.selector}"]
    assert dkim_check.status == "error" and dkim_check.details["last_definite_status"] == "ok"
    domain.refresh_from_db()
    assert domain.verified_at is not None and domain.dkim_ok
    assert not Event.objects.filter(type=EventType.DOMAIN_DNS_BROKEN).exists()

    zone.heal(key.record_name)
    zone.remove(key.record_name)
    domain_verify(domain=domain)
    domain_verify(domain=domain)
    domain.refresh_from_db()
    assert not domain.dkim_ok
    [broken] = Event.objects.filter(type=EventType.DOMAIN_DNS_BROKEN)
    assert broken.details["check"] == f"dkim:{key.selector}" and broken.details["status"] == "missing"

    publish_records(zone, domain, ("dkim",))
    domain_verify(domain=domain)
    assert Event.objects.filter(type=EventType.DOMAIN_DNS_FIXED).count() == 1


def test_dkim_rotation_signs_with_the_old_key_until_the_new_record_is_published(api, zone, mx, domain):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    old = domain.dkim_keys.get()
    rotated = api.post(f"/api/v1/domains/{domain.pk}/rotate-dkim", {}, format="json")
    assert rotated.status_code == 201
    new_selector = rotated.json()["selector"]
    assert rotated.json()["state"] == "pending" and new_selector != old.selector

    def send_and_selector() -> str:
        sink.reset()
        assert api.post("/api/v1/messages", SEND, format="json").status_code == 202
        deliver_queued()
        assert sink.wait_for(1)
        data = sink.messages[0].data
        assert dkim.verify(data, dnsfunc=dns_txt(zone))
        return _selector(data)

    domain_verify(domain=domain)  # the new record is not in DNS yet
    assert send_and_selector() == old.selector

    publish_records(zone, domain, ("dkim",))
    domain_verify(domain=domain)
    assert send_and_selector() == new_selector
    old.refresh_from_db()
    assert old.state == DkimKey.State.RETIRED
    [activated] = Event.objects.filter(type=EventType.DKIM_KEY_ACTIVATED, details__selector=new_selector)
    assert old.record_name in activated.details["message"]


def _selector(data: bytes) -> str:
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    for part in header.replace("\r\n", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "s":
            return value.strip()
    raise AssertionError("no s= tag")


def test_ed25519_dual_signature_verifies_against_dns(api, zone, mx, organization):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    response = api.post("/api/v1/domains", {"name": "dual.example", "dkim_ed25519": True}, format="json")
    domain = Domain.objects.get(name="dual.example")
    assert {k["algorithm"] for k in response.json()["dkim_keys"]} == {"rsa", "ed25519"}
    publish_records(zone, domain)
    domain_verify(domain=domain)
    assert set(domain.dkim_keys.values_list("state", flat=True)) == {"active"}

    assert api.post("/api/v1/messages", {**SEND, "from": "app@dual.example"}, format="json").status_code == 202
    deliver_queued()
    assert sink.wait_for(1)
    data = sink.messages[0].data
    assert data.count(b"DKIM-Signature:") == 2
    assert b"a=ed25519-sha256" in data and b"a=rsa-sha256" in data
    lookup = dns_txt(zone)
    # dkimpy verifies one signature per call, by index: both must hold against the published records.
    verifier = dkim.DKIM(data)
    assert verifier.verify(idx=0, dnsfunc=lookup)
    assert verifier.verify(idx=1, dnsfunc=lookup)


def test_dmarc_reject_without_alignment_refuses_before_queueing(api, zone, organization, domain, smtp_credential):
    # The owner publishes p=reject but never published the return-path CNAME, and the DKIM record is gone.
    zone.add("_dmarc.acme.example", "TXT", "v=DMARC1; p=reject; rua=mailto:d@acme.example")
    zone.remove("pm-bounces.acme.example")
    key = domain.dkim_keys.get()
    zone.remove(key.record_name)
    domain_verify(domain=domain)
    domain.refresh_from_db()
    assert domain.dmarc["text"].startswith("v=DMARC1; p=reject")

    refused = api.post("/api/v1/messages", SEND, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"] == "dmarc_alignment"
    assert "p=reject" in refused.json()["message"]
    credential, _ = smtp_credential
    with pytest.raises(Refused) as caught:
        smtp_message_submit(
            credential=credential,
            mail_from="app@acme.example",
            rcpt_tos=["jane@dest.example"],
            raw=b"From: app@acme.example\r\nTo: jane@dest.example\r\nSubject: x\r\n\r\nbody\r\n",
        )
    assert caught.value.reply.startswith("550 5.7.1 ") and "DMARC" in caught.value.reply
    assert not Message.objects.exists()

    # With DKIM back in DNS, DKIM aligns and mail flows again.
    publish_records(zone, domain, ("dkim",))
    domain_verify(domain=domain)
    assert api.post("/api/v1/messages", SEND, format="json").status_code == 202


def test_dmarc_reject_with_alignment_sends(api, zone, domain):
    zone.add("_dmarc.acme.example", "TXT", "v=DMARC1; p=reject; adkim=s")
    domain_verify(domain=domain)
    assert api.post("/api/v1/messages", SEND, format="json").status_code == 202


@pytest.fixture
def smtp_credential(organization, domain):
    return smtp_credential_create(organization=organization, name="app")


def test_check_dns_command_prints_every_check(zone, domain):
    out = io.StringIO()
    call_command("check_dns", "acme.example", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["domain"] == "acme.example" and result["verified"] is True
    names = [c["name"] for c in result["checks"]]
    assert {"ownership", "return_path", "spf:from", "spf:return_path", "dmarc"} <= set(names)
    assert all({"name", "status", "message"} <= set(c) for c in result["checks"])


def test_periodic_checks_pick_due_domains_once(zone, domain):
    Domain.objects.filter(pk=domain.pk).update(next_check_at=timezone.now())
    assert domains_due() == [domain.pk]
    assert domains_due() == []  # leased until the queued check runs
    domain_verify(domain=domain)
    domain.refresh_from_db()
    assert (domain.next_check_at - timezone.now()).total_seconds() > 23 * 3600  # verified: daily


def test_delete_waits_for_queued_mail(api, zone, domain):
    assert api.post("/api/v1/messages", SEND, format="json").status_code == 202
    busy = api.delete(f"/api/v1/domains/{domain.pk}")
    assert busy.status_code == 409
    Message.objects.all().delete()
    assert api.delete(f"/api/v1/domains/{domain.pk}").status_code == 204
    assert not Domain.objects.exists()


def test_provision_verify_reports_checks(zone, organization):
    api_key_create(organization=organization, name="x")
    out = io.StringIO()
    call_command("provision", "--org", "Acme", "--domain", "prov.example", "--verify", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["verified"] == {"prov.example": False}
    statuses = {c["name"]: c["status"] for c in result["checks"]["prov.example"]}
    assert statuses["ownership"] == "missing"

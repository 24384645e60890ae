"""Every dashboard page and action, as a member uses them: what each shows and what each changes."""

from __future__ import annotations

import csv
import html
import io
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, Membership, SmtpCredential
from sending.domains.service import domain_get_or_create
from sending.models import DkimKey, DnsCheck, Domain, Message, Recipient, Suppression
from tests.conftest import publish_records
from tests.dashboard.conftest import PASSWORD, send

pytestmark = pytest.mark.django_db


def url(name: str, org, *args: object) -> str:  # type: ignore[no-untyped-def]
    return reverse(f"dashboard:{name}", args=[org.pk, *args])


# --- Entry, login, organization switcher -------------------------------------------------------------------


def test_root_sends_anonymous_visitors_to_login_and_members_to_their_overview(client, owner, organization):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:login")
    page = client.get(reverse("dashboard:login"))
    assert page.status_code == 200 and b'name="password"' in page.content

    logged_in = client.post(reverse("dashboard:login"), {"username": "owner", "password": PASSWORD})
    assert logged_in.status_code == 302
    assert client.get("/")["Location"] == url("overview", organization)


def test_wrong_password_is_refused_with_a_message(client, owner):
    response = client.post(reverse("dashboard:login"), {"username": "owner", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_organization_pages_require_login(client, organization):
    response = client.get(url("domains", organization))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("dashboard:login") + "?next=")


def test_switcher_lists_every_organization_and_root_remembers_the_last(owner, owner_client, other, organization):
    Membership.objects.create(organization=other["org"], user=owner, role="viewer")
    page = owner_client.get(url("overview", organization)).content.decode()
    assert 'aria-label="Switch organization"' in page and "Globex" in page and "Acme" in page
    owner_client.get(url("overview", other["org"]))
    assert owner_client.get("/")["Location"] == url("overview", other["org"])


def test_user_without_organization_is_told_what_to_do(make_user, as_user):
    client = as_user(make_user("loner"))
    response = client.get("/")
    assert response.status_code == 200 and b"not in an organization yet" in response.content
    staff = as_user(make_user("operator", staff=True))
    assert staff.get("/")["Location"] == reverse("dashboard:queue")


def test_logout_is_a_post_and_ends_the_session(owner_client, organization):
    assert owner_client.get(reverse("dashboard:logout")).status_code == 405
    assert owner_client.post(reverse("dashboard:logout")).status_code == 302
    assert owner_client.get(url("overview", organization)).status_code == 302


def test_password_change(owner, owner_client):
    response = owner_client.post(
        reverse("dashboard:password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a new long passphrase 42",
            "new_password2": "a new long passphrase 42",
        },
    )
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password("a new long passphrase 42")


# --- Overview ----------------------------------------------------------------------------------------------


def test_overview_counts_and_charts_what_happened(owner_client, organization, delivered):
    response = owner_client.get(url("overview", organization) + "?period=24h")
    assert response.status_code == 200
    totals = response.context["totals"]
    assert (totals["accepted"], totals["sent"], totals["delivered"], totals["bounced"]) == (2, 2, 1, 1)
    assert response.context["rates"].delivery_rate == 0.5 and response.context["rates"].bounce_rate == 0.5
    charts = {c.id: c for c in response.context["charts"]}
    assert list(charts) == ["chart-outcomes", "chart-bounce-rate", "chart-complaint-rate", "chart-engagement"]
    outcomes = charts["chart-outcomes"]
    assert len(outcomes.labels) == 24 and outcomes.labels[-1].endswith(":00")
    assert [d.label for d in outcomes.datasets] == ["Delivered", "Deferred", "Bounced", "Complained", "Sent"]
    assert outcomes.rows()[-1][2] == ["1", "0", "1", "0", "2"]  # this hour: the table under the chart
    bounce = charts["chart-bounce-rate"]
    assert [d.label for d in bounce.datasets] == ["Bounce rate", "Warning at 5 %", "Paused at 10 %"]
    assert bounce.rows()[-1][2] == ["50.00 %"] and bounce.columns() == ["Bounce rate"]
    page = response.content.decode()
    # Data for charts.js as JSON (no inline script runs: the CSP allows only our own files), and the tables.
    assert '<script id="chart-outcomes-data" type="application/json">' in page
    assert 'id="chart-outcomes-table"' in page and "<canvas" in page and "Delivery rate" in page
    assert "vendor/chart.umd.min.js" in page
    for period, buckets in (("7d", 7), ("30d", 30)):
        response = owner_client.get(url("overview", organization) + f"?period={period}")
        (outcomes,) = [c for c in response.context["charts"] if c.id == "chart-outcomes"]
        assert len(outcomes.labels) == buckets and response.context["totals"]["delivered"] == 1


def test_statistics_page_breaks_down_by_domain_tag_stream_and_provider(owner_client, organization, delivered):
    response = owner_client.get(url("statistics", organization) + "?period=365d")
    assert response.status_code == 200
    charts = {c.id: c for c in response.context["charts"]}
    assert {"chart-delivery-time", "chart-by-domain", "chart-by-tag", "chart-by-stream", "chart-by-provider"} <= set(
        charts
    )
    assert len(charts["chart-outcomes"].labels) == 365
    assert charts["chart-by-tag"].rows() == [("order", "", ["1", "0", "0", "0"]), ("bounce", "", ["0", "0", "1", "0"])]
    assert charts["chart-by-domain"].rows() == [("acme.example", "", ["1", "0", "1", "0"])]
    delivery_time = charts["chart-delivery-time"].rows()[-1][2]
    assert len(delivery_time) == 3 and all(v.startswith("≤ ") for v in delivery_time)
    assert owner_client.get(url("statistics", organization) + "?period=nonsense").context["period"] == "7d"


def test_overview_says_when_a_verified_domains_dns_broke(owner_client, organization, healthy):
    page = owner_client.get(url("overview", organization)).content.decode()
    assert "Nothing needs attention" in page
    DnsCheck.objects.filter(domain=healthy, name__startswith="dkim:").update(status="missing", message="No record.")
    page = owner_client.get(url("overview", organization)).content.decode()
    assert "acme.example: DKIM key" in page and " broke on " in page and "No record." in page
    DnsCheck.objects.filter(domain=healthy, name="dmarc").update(status="missing", ok_at=None, message="No DMARC.")
    page = owner_client.get(url("overview", organization)).content.decode()
    assert "acme.example: DMARC is not set up. No DMARC." in page


def test_overview_of_a_new_organization_invites_to_add_a_domain(owner_client, organization):
    page = owner_client.get(url("overview", organization)).content.decode()
    assert "Start by adding a sender domain" in page


# --- Domains -----------------------------------------------------------------------------------------------


def test_add_domain_shows_its_records_then_check_now_verifies_it(owner_client, organization, zone):
    response = owner_client.post(url("domain_add", organization), {"name": "New.Example"})
    domain = Domain.objects.get(name="new.example", organization=organization)
    assert response.status_code == 302 and response["Location"] == url("domain", organization, domain.pk)

    page = owner_client.get(response["Location"]).content.decode()
    key = domain.dkim_keys.get()
    assert f"postwerk-verification={domain.verification_token}" in page
    assert key.record_name in page and key.public_key in page
    assert "pm-bounces.new.example" in page
    assert page.count('class="copy"') >= 10  # a copy button for each record's name and value
    assert "Cannot send yet" in page

    publish_records(zone, domain)
    response = owner_client.post(url("domain_check", organization, domain.pk), follow=True)
    page = response.content.decode()
    assert "the domain can send" in page and "Can send" in page
    assert "Ownership record" in page and f"DKIM key {key.selector}" in page
    domain.refresh_from_db()
    assert domain.verified_at is not None


def test_add_domain_refuses_bad_duplicate_and_taken_names(owner_client, organization, other, domain):
    bad = owner_client.post(url("domain_add", organization), {"name": "not a domain"})
    assert bad.status_code == 400 and b"is not a domain name" in bad.content
    duplicate = owner_client.post(url("domain_add", organization), {"name": "acme.example"})
    assert duplicate.status_code == 400 and b"already added" in duplicate.content
    taken = owner_client.post(url("domain_add", organization), {"name": "globex.example"})
    assert taken.status_code == 400 and b"belongs to another organization" in taken.content


def test_rotate_dkim_adds_a_pending_key(owner_client, organization, domain):
    response = owner_client.post(url("domain_rotate", organization, domain.pk), {"algorithm": "rsa"}, follow=True)
    assert response.status_code == 200
    pending = domain.dkim_keys.get(state=DkimKey.State.PENDING)
    assert f"New DKIM key {pending.selector}" in response.content.decode()
    assert domain.dkim_keys.filter(state=DkimKey.State.ACTIVE).count() == 1


def test_delete_domain_waits_for_queued_mail(owner_client, organization, api, domain):
    send(api)
    response = owner_client.post(url("domain_delete", organization, domain.pk), follow=True)
    assert b"still has messages waiting" in response.content
    Recipient.objects.update(state="delivered")
    owner_client.post(url("domain_delete", organization, domain.pk))
    assert not Domain.objects.filter(pk=domain.pk).exists()


def test_domains_list_empty_state_and_status(owner_client, organization, healthy):
    assert (
        '<span class="badge badge-ok">Can send</span></td>'
        in owner_client.get(url("domains", organization)).content.decode()
    )
    DnsCheck.objects.filter(domain=healthy, name="dmarc").update(status="wrong")
    page = owner_client.get(url("domains", organization)).content.decode()
    # A wrong DMARC record does not stop the mail: the list says so, as the domain's own page does.
    status = '<span class="badge badge-ok">Can send</span> <span class="badge badge-warning">1 DNS problem</span>'
    assert status in page and "dmarc wrong" in page
    assert status in owner_client.get(url("domain", organization, healthy.pk)).content.decode()
    fresh, _ = domain_get_or_create(organization=organization, name="fresh.example")
    waiting = '<span class="badge badge-warning">Cannot send yet</span>'
    assert waiting in owner_client.get(url("domains", organization)).content.decode()
    assert waiting in owner_client.get(url("domain", organization, fresh.pk)).content.decode()
    Domain.objects.all().delete()
    assert b"No sender domains yet" in owner_client.get(url("domains", organization)).content


# --- Messages ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "subjects"),
    [
        ("", {"Your order", "Bounce me"}),
        ("recipient=jane@dest.example", {"Your order"}),
        ("recipient=JANE@dest.example", {"Your order"}),
        ("recipient=gone", {"Bounce me"}),
        ("sender=hello@acme", {"Your order", "Bounce me"}),
        ("sender=nobody", set()),
        ("subject=bounce", {"Bounce me"}),
        ("tag=order", {"Your order"}),
        ("status=bounced", {"Bounce me"}),
        ("status=delivered", {"Your order"}),
        ("since=2000-01-01&until=2999-01-01", {"Your order", "Bounce me"}),
        ("until=2000-01-01", set()),
    ],
)
def test_message_search(owner_client, organization, delivered, query, subjects):
    response = owner_client.get(url("messages", organization) + "?" + query)
    assert response.status_code == 200
    assert {m.subject for m in response.context["rows"]} == subjects


def test_message_search_by_id_or_message_id_header(owner_client, organization, delivered):
    message = Message.objects.get(pk=delivered["sent"]["id"])
    for wanted in (str(message.pk), message.message_id, message.message_id.strip("<>")):
        rows = owner_client.get(url("messages", organization), {"message_id": wanted}).context["rows"]
        assert [m.pk for m in rows] == [message.pk]


def test_message_search_pages_with_a_cursor(owner_client, organization, api, domain, monkeypatch):
    monkeypatch.setattr("dashboard.views.messages.PAGE_SIZE", 2)
    for i in range(5):
        send(api, subject=f"n{i}")
    seen = []
    link = url("messages", organization)
    while link:
        response = owner_client.get(link)
        seen += [m.subject for m in response.context["rows"]]
        cursor = response.context["next_cursor"]
        link = f"{url('messages', organization)}?{urlencode({'after': cursor})}" if cursor else None
    assert seen == ["n4", "n3", "n2", "n1", "n0"]


def test_message_search_with_bad_date_says_so(owner_client, organization):
    response = owner_client.get(url("messages", organization), {"since": "yesterday"})
    assert response.status_code == 400 and b"Enter a valid date" in response.content


def test_messages_empty_state(owner_client, organization):
    assert b"No messages yet" in owner_client.get(url("messages", organization)).content


def test_message_page_shows_recipients_timeline_replies_and_headers(owner_client, organization, delivered):
    message = Message.objects.get(pk=delivered["refused"]["id"])
    page = owner_client.get(url("message", organization, message.pk)).content.decode()
    assert "gone@dest.example" in page
    assert page.index("queued") < page.index("sent") < page.rindex("bounced")
    assert "550 5.1.1" in page and "no such user" in page
    assert "<dt>MX host</dt><dd>mx1.dest.example · TLS no</dd>" in page
    # Which transport security policy governed the attempt (#26): none here, so opportunistic TLS.
    assert "TLS policy: none (opportunistic TLS): success" in page
    assert "Message-ID" in page and html.escape(message.message_id) in page
    assert "Download the raw source" in page

    delivered_page = owner_client.get(url("message", organization, delivered["sent"]["id"])).content.decode()
    assert "delivered" in delivered_page and "250" in delivered_page
    assert '<iframe class="html-preview" sandbox src=' in delivered_page


def test_message_page_shows_stream_schedule_and_the_template_version(owner_client, organization, api, domain):
    from sending.templating.service import template_create

    template = template_create(organization=organization, alias="receipt", name="Receipt", text="Hi {{ name }}")
    send_at = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    sent = send(api, subject=None, text=None, html=None, template="receipt", model={"name": "Jo"}, priority="high")
    page = owner_client.get(url("message", organization, sent["id"])).content.decode()
    link = reverse("dashboard:template", args=[organization.pk, template.pk])
    assert f'<dd id="message-template"><a href="{link}">receipt</a>, version 1</dd>' in page
    assert '<dd id="message-stream">transactional · <span class="badge">high priority</span></dd>' in page
    assert "message-send-at" not in page

    plain = send(api, send_at=send_at.isoformat())
    page = owner_client.get(url("message", organization, plain["id"])).content.decode()
    assert "message-template" not in page
    shown = f'<time datetime="{send_at.isoformat()}">{send_at:%Y-%m-%d %H:%M:%S} UTC</time>'
    assert f'<dd id="message-send-at">{shown}</dd>' in page


def test_raw_source_downloads_as_eml(owner_client, organization, delivered):
    message = Message.objects.get(pk=delivered["sent"]["id"])
    response = owner_client.get(url("message_source", organization, message.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response["Content-Disposition"] == f'attachment; filename="{message.pk}.eml"'
    assert response.content == bytes(Message.objects.get(pk=message.pk).raw)


def test_html_body_is_served_sandboxed_with_a_restrictive_policy(owner_client, organization, api, domain):
    sent = send(api, html='<p>Hi</p><script>alert(1)</script><img src="https://tracker.example/p.gif">')
    response = owner_client.get(url("message_html", organization, sent["id"]))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert csp.startswith("sandbox;") and "default-src 'none'" in csp and "img-src data:" in csp
    assert "script-src" not in csp  # falls back to default-src 'none'
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert b"<p>Hi</p>" in response.content

    text_only = send(api, html=None)
    assert owner_client.get(url("message_html", organization, text_only["id"])).status_code == 404
    page = owner_client.get(url("message", organization, text_only["id"])).content.decode()
    assert "<iframe" not in page and "Thanks!" in page


# --- Suppressions ------------------------------------------------------------------------------------------


def test_suppress_search_and_lift(owner_client, organization):
    response = owner_client.post(
        url("suppression_add", organization), {"address": "Jane <Jane@Dest.example>", "note": "asked"}, follow=True
    )
    assert b"jane@dest.example suppressed." in response.content
    row = Suppression.objects.get(organization=organization)
    assert (row.address, row.reason, row.details, row.created_by) == (
        "jane@dest.example",
        "manual",
        {"note": "asked"},
        "user:owner",
    )

    assert owner_client.get(url("suppressions", organization), {"address": "jane"}).context["page_obj"].object_list
    assert not owner_client.get(url("suppressions", organization), {"address": "bob"}).context["page_obj"].object_list
    assert (
        not owner_client.get(url("suppressions", organization), {"reason": "complaint"}).context["page_obj"].object_list
    )

    response = owner_client.post(url("suppression_remove", organization), {"address": "jane@dest.example"}, follow=True)
    assert b"may be mailed again" in response.content
    row.refresh_from_db()
    assert row.removed_at is not None and row.removed_by == "user:owner"
    assert not owner_client.get(url("suppressions", organization)).context["page_obj"].object_list
    assert (
        owner_client.get(url("suppressions", organization), {"include_removed": "on"}).context["page_obj"].object_list
    )


def test_suppress_refuses_a_bad_address(owner_client, organization):
    response = owner_client.post(url("suppression_add", organization), {"address": "not an address"})
    assert response.status_code == 400 and not Suppression.objects.exists()


def test_suppressions_import_and_export_csv(owner_client, organization):
    upload = SimpleUploadedFile(
        "list.csv", b"address,reason\na@x.example,complaint\nnot-an-address,manual\nb@x.example,\nc@x.example,bogus\n"
    )
    response = owner_client.post(url("suppressions_import", organization), {"file": upload}, follow=True)
    page = response.content.decode()
    assert "Imported: 2 added, 0 already suppressed." in page
    assert "Line 3:" in page and "Line 5: unknown reason" in page
    pasted = owner_client.post(
        url("suppressions_import", organization), {"text": "a@x.example\nd@x.example\n"}, follow=True
    )
    assert b"Imported: 1 added, 1 already suppressed." in pasted.content
    assert owner_client.post(url("suppressions_import", organization), {"text": "  "}).status_code == 400

    export = owner_client.get(url("suppressions_export", organization))
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert {(r["address"], r["reason"]) for r in rows} == {
        ("a@x.example", "complaint"),
        ("b@x.example", "manual"),
        ("d@x.example", "manual"),
    }
    filtered = owner_client.get(url("suppressions_export", organization), {"reason": "complaint"})
    assert len(list(csv.DictReader(io.StringIO(filtered.content.decode())))) == 1


# --- API keys and SMTP credentials -------------------------------------------------------------------------


def test_api_key_secret_is_shown_once_works_and_revoking_stops_it(owner_client, organization, domain):
    response = owner_client.post(url("api_key_create", organization), {"name": "billing", "scopes": ["domains"]})
    assert response.status_code == 201
    assert response["Cache-Control"].count("no-store") == 1
    secret = response.context["new_key"][1]
    assert secret.encode() in response.content and b"shown only this once" in response.content
    assert secret.encode() not in owner_client.get(url("keys", organization)).content

    api = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/api/v1/domains").status_code == 200
    key = ApiKey.objects.get(name="billing")
    page = owner_client.get(url("keys", organization)).content.decode()
    assert key.prefix in page and "never" not in page.split("billing", 1)[1].split("</tr>", 1)[0]

    response = owner_client.post(url("api_key_revoke", organization, key.pk), follow=True)
    assert b"revoked" in response.content
    assert api.get("/api/v1/domains").status_code == 401
    assert (
        owner_client.post(url("api_key_create", organization), {"name": "billing", "scopes": ["domains"]}).status_code
        == 400
    )


def test_smtp_credential_create_limits_and_revoke(owner_client, organization, domain):
    response = owner_client.post(
        url("smtp_credential_create", organization),
        {"name": "rails", "allowed_domains": [domain.pk], "allowed_networks": "203.0.113.0/24, 198.51.100.7"},
    )
    assert response.status_code == 201
    credential, password = response.context["new_credential"]
    assert password.encode() in response.content and credential.username.encode() in response.content
    credential = SmtpCredential.objects.get(pk=credential.pk)
    assert list(credential.allowed_domains.all()) == [domain]
    assert credential.allowed_networks == ["203.0.113.0/24", "198.51.100.7/32"]

    bad = owner_client.post(url("smtp_credential_create", organization), {"name": "x", "allowed_networks": "nope"})
    assert bad.status_code == 400 and b"is not a CIDR network" in bad.content
    owner_client.post(url("smtp_credential_revoke", organization, credential.pk))
    credential.refresh_from_db()
    assert credential.revoked_at is not None


def test_keys_page_shows_connection_settings(owner_client, organization, settings):
    settings.POSTWERK_SMTP_SUBMISSION = "0.0.0.0:587"
    settings.POSTWERK_SMTP_SUBMISSIONS = "off"
    page = owner_client.get(url("keys", organization)).content.decode()
    assert "mta.postwerk.example" in page and "<code>587</code>" in page and "http://testserver/api/v1/" in page
    assert "Port, implicit TLS</dt><dd>off" in page
    assert "No API keys yet" in page and "No SMTP credentials yet" in page


# --- Members -----------------------------------------------------------------------------------------------


def test_add_existing_user_change_role_and_remove(owner_client, organization, make_user):
    make_user("dev")
    response = owner_client.post(url("member_add", organization), {"identifier": "dev", "role": "developer"})
    assert response.status_code == 302
    membership = Membership.objects.get(organization=organization, user__username="dev")
    owner_client.post(url("member_role", organization, membership.pk), {"role": "viewer"})
    membership.refresh_from_db()
    assert membership.role == "viewer"
    owner_client.post(url("member_remove", organization, membership.pk))
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_add_new_person_by_email_creates_an_account_with_a_one_time_password(owner_client, organization):
    response = owner_client.post(
        url("member_add", organization), {"identifier": "new@people.example", "role": "viewer"}
    )
    assert response.status_code == 201
    membership, password = response.context["created"]
    assert membership.user.check_password(password) and password.encode() in response.content
    again = owner_client.post(url("member_add", organization), {"identifier": "new@people.example", "role": "viewer"})
    assert again.status_code == 400 and b"already a member" in again.content
    unknown = owner_client.post(url("member_add", organization), {"identifier": "nobody", "role": "viewer"})
    assert unknown.status_code == 400 and b"give an email address" in unknown.content


def test_the_last_owner_stays_and_only_owners_grant_ownership(owner, owner_client, member, as_user, organization):
    mine = Membership.objects.get(user=owner)
    response = owner_client.post(url("member_role", organization, mine.pk), {"role": "admin"}, follow=True)
    assert b"at least one owner" in response.content
    owner_client.post(url("member_remove", organization, mine.pk))
    assert Membership.objects.filter(pk=mine.pk, role="owner").exists()

    admin = as_user(member("admin"))
    dev = Membership.objects.get(user=member("developer"))
    response = admin.post(url("member_role", organization, dev.pk), {"role": "owner"}, follow=True)
    assert b"Only an owner" in response.content
    response = admin.post(url("member_remove", organization, mine.pk), follow=True)
    assert b"Only an owner" in response.content
    admin.post(url("member_role", organization, dev.pk), {"role": "admin"})
    dev.refresh_from_db()
    assert dev.role == "admin"


# --- Operators ---------------------------------------------------------------------------------------------


def test_queue_page_counts_states_and_groups_deferred_by_destination(make_user, as_user, api, zone, mx, domain):
    sink = mx("127.0.0.2")
    sink.tempfail_next = 1
    from tests.conftest import add_mx_domain, deliver_queued

    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api)
    send(api, to=["someone@elsewhere.example"])
    deliver_queued()
    staff = as_user(make_user("operator", staff=True))
    response = staff.get(reverse("dashboard:queue"))
    assert response.status_code == 200
    stats = response.context["stats"]
    by_state = dict(stats.by_state)
    assert by_state["deferred"] == 1
    assert [row["domain"] for row in stats.deferred_by_destination] == ["dest.example"]
    assert stats.deferred_by_destination[0]["last"]["last_code"] == 451
    assert stats.oldest_waiting is not None
    assert b"Deferred by destination" in response.content


def test_queue_page_is_for_staff_only(owner_client):
    assert owner_client.get(reverse("dashboard:queue")).status_code == 403

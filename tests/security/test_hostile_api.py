"""Hostile input at the send API and the batch API: line breaks (raw, URL-encoded, RFC 2047 encoded words,
Unicode line separators) and NUL in every field, very long values, broken JSON and compression bombs.

Every answer is a 4xx JSON naming the field with nothing stored, or an accepted message whose stored raw has
exactly the headers we built (parsed back with the email package). Never a 500."""

from __future__ import annotations

import base64
import email
import gzip
import io
import json
import zipfile
from collections.abc import Callable
from email import policy
from email.message import EmailMessage

import pytest

from sending.api.serializers import AttachmentSerializer, SendMessageSerializer
from sending.models import Event, Message, Recipient
from sending.templating.service import template_create

pytestmark = pytest.mark.django_db

EVIL = "Bcc: evil@evil.example"
HOSTILE = [
    "\r",
    "\n",
    "\r\n",
    "\r\n" + EVIL,
    "\n\nbody",
    "%0d%0a" + EVIL,
    "%0D%0A" + EVIL,
    "=?utf-8?q?=0D=0A" + EVIL.replace(" ", "_") + "?=",
    "=?utf-8?b?" + base64.b64encode(("\r\n" + EVIL).encode()).decode() + "?=",
    # An encoded word counts only when whitespace delimits it (RFC 2047 §5).
    " =?utf-8?q?=0D=0A" + EVIL.replace(" ", "_") + "?= ",
    " =?utf-8?b?" + base64.b64encode(("\r\n" + EVIL).encode()).decode() + "?= x",
    "\u2028" + EVIL,
    "\u2029" + EVIL,
    "\x85" + EVIL,
    "\x0b" + EVIL,
    "\x0c",
    "\x00",
    "\x00" + EVIL,
]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


@pytest.fixture(autouse=True)
def _unlimited_rate(settings):  # type: ignore[no-untyped-def]
    """Hundreds of requests a second here: the per-key rate limit is not what these tests are about."""
    settings.POSTWERK_API_RATE_LIMIT = 0


def base(**overrides: object) -> dict:
    body: dict = {
        "from": "Acme <hello@acme.example>",
        "to": ["Jane <jane@dest.example>"],
        "subject": "Hello",
        "text": "Hello Jane",
    }
    body.update(overrides)
    return body


def templated(**overrides: object) -> dict:
    """A message from the `greeting` template (subject and text from the model), instead of subject and text."""
    body = base(**{"template": "greeting", "model": {"name": "Jane"}, **overrides})
    del body["subject"], body["text"]
    return body


@pytest.fixture(autouse=True)
def greeting(organization):  # type: ignore[no-untyped-def]
    return template_create(
        organization=organization,
        alias="greeting",
        name="Greeting",
        subject="Hello {{ name }}",
        html="",
        text="Hello {{ name }}, your order is on its way.",
    )


def attachment(**fields: str) -> dict:
    return {"filename": "a.txt", "content_type": "text/plain", "content": "eA==", **fields}


# Where a hostile value goes: (request field it belongs to, payload). Every string the API takes is here, and
# test_every_field_is_covered fails when the serializers gain one that is not.
PLACEMENTS: dict[str, tuple[str, Callable[[str], dict]]] = {
    "from.name": ("from", lambda v: base(**{"from": f"Acme{v} <hello@acme.example>"})),
    "from.address": ("from", lambda v: base(**{"from": f"hello{v}@acme.example"})),
    **{
        f"{kind}.name": (kind, lambda v, kind=kind: base(**{kind: [f"Bob{v} <bob@dest.example>"]}))
        for kind in ("to", "cc", "bcc", "reply_to")
    },
    **{
        f"{kind}.address": (kind, lambda v, kind=kind: base(**{kind: [f"bob{v}@dest.example"]}))
        for kind in ("to", "cc", "bcc", "reply_to")
    },
    "subject": ("subject", lambda v: base(subject=f"Hello{v}")),
    "text": ("text", lambda v: base(text=f"Hello{v}")),
    "html": ("html", lambda v: base(html=f"<p>Hello{v}</p>")),
    "headers.name": ("headers", lambda v: base(headers={f"X-Test{v}": "1"})),
    "headers.value": ("headers", lambda v: base(headers={"X-Test": f"a{v}"})),
    "tags": ("tags", lambda v: base(tags=[f"t{v}"])),
    "metadata.key": ("metadata", lambda v: base(metadata={f"k{v}": "1"})),
    "metadata.value": ("metadata", lambda v: base(metadata={"k": f"a{v}"})),
    "attachments.filename": ("attachments", lambda v: base(attachments=[attachment(filename=f"a{v}.txt")])),
    "attachments.content_type": ("attachments", lambda v: base(attachments=[attachment(content_type=f"text/x{v}")])),
    "attachments.content": ("attachments", lambda v: base(attachments=[attachment(content=f"eA=={v}")])),
    # The fields that choose how a message is sent: every hostile value is an unknown name or not a value of the
    # field's type.
    "stream": ("stream", lambda v: base(stream=f"transactional{v}")),
    "priority": ("priority", lambda v: base(priority=f"high{v}")),
    "send_at": ("send_at", lambda v: base(send_at=f"2030-01-01T00:00:00Z{v}")),
    "deliver_within": ("deliver_within", lambda v: base(deliver_within=f"60{v}")),
    "template": ("template", lambda v: templated(template=f"greeting{v}")),
    "track_opens": ("track_opens", lambda v: base(track_opens=f"false{v}")),
    "track_clicks": ("track_clicks", lambda v: base(track_clicks=f"true{v}")),
    # A model's values are rendered into the subject and the body: a header must never come out of them.
    "model.key": ("model", lambda v: templated(model={"name": "Jane", f"k{v}": "1"})),
    "model.value": ("subject", lambda v: templated(model={"name": f"Jane{v}"})),
    "attachments.content_id": (
        "attachments",
        lambda v: base(html="<img src=cid:x>", attachments=[attachment(content=PNG, content_id=f"x{v}")]),
    ),
}
# The one answer for each hostile value (by its index in HOSTILE) in each place: accepted (202, and then built
# safely) for these, refused (400 naming the field) for every other. Bodies, tags and metadata values are data,
# never a header; percent-escapes are plain text; an encoded word in a display name is encoded again (RFC 2047),
# and Bcc and metadata keys never reach a header at all.
ACCEPTED: dict[str, set[int]] = {
    "from.name": {5, 6, 7, 8},
    "from.address": {8},
    **{f"{kind}.name": {5, 6, 7, 8} for kind in ("to", "cc", "reply_to")},
    "bcc.name": {5, 6, 7, 8, 9, 10},
    **{f"{kind}.address": {8} for kind in ("to", "cc", "bcc", "reply_to")},
    "subject": {5, 6},
    "text": set(range(16)),
    "html": set(range(16)),
    "headers.name": {8},
    "headers.value": {5, 6},
    "tags": set(range(16)),
    "metadata.key": {5, 6, 7, 8, 9, 10},
    "metadata.value": set(range(16)),
    "attachments.filename": {5, 6, 7, 8},
    "attachments.content_type": {0, 1, 2, 8, 15},
    "attachments.content": {0, 1, 2, 15},
    "attachments.content_id": {0, 1, 2, 15},
    # Surrounding whitespace is trimmed from a name or number (so "transactional\r" is transactional): harmless, as
    # neither value is ever written into the message.
    "stream": {0, 1, 2, 15},
    "priority": set(),
    "send_at": set(),
    "deliver_within": {0, 1, 2, 15},
    "template": set(),
    # A boolean is true, false or null: "false\r" is none of them.
    "track_opens": set(),
    "track_clicks": set(),
    "model.key": set(range(len(HOSTILE))),  # keys the template does not use change nothing
    # Line breaks that would split the rendered subject are refused naming `subject`; a NUL naming `model`.
    "model.value": set(range(len(HOSTILE))) - {7, 8, 9, 10, 16, 17},
}


def expected_status(placement: str, value: str) -> int:
    return 202 if HOSTILE.index(value) in ACCEPTED[placement] else 400


MIME_PART_HEADERS = {"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID", "MIME-Version"}


def counts() -> tuple[int, int, int]:
    return Message.objects.count(), Recipient.objects.count(), Event.objects.count()


def post(api, url: str, body: object):  # type: ignore[no-untyped-def]
    return api.post(url, json.dumps(body), content_type="application/json")


def assert_refused(answer: dict, field: str, case: str) -> None:
    if answer.get("error") == "template_render":  # a NUL a model put into the rendered message
        assert list(answer["fields"]) == ["model"] and "\\x00" in case, (case, answer)  # the value's repr
        return
    # A template name with a control character is refused by the field, a printable unknown one by the lookup.
    assert answer["error"] in ({"invalid", "unknown_template"} if field == "template" else {"invalid"}), (case, answer)
    assert field in answer.get("fields", {}), (case, answer)


def assert_built_safely(message: Message, payload: dict, case: str) -> None:
    """The stored raw has exactly the header set we build for `payload`, and MIME headers only in its parts."""
    raw = bytes(message.raw)
    parsed: EmailMessage = email.message_from_bytes(raw, policy=policy.default)  # type: ignore[assignment]
    names = list(parsed.keys())
    expected = {
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        *payload.get("headers", {}),
    }
    expected |= {"Cc"} if payload.get("cc") else set()
    expected |= {"Reply-To"} if payload.get("reply_to") else set()
    assert len(names) == len(set(names)), (case, names)
    assert set(names) - {"Content-Transfer-Encoding"} == expected, (case, names)
    for part in parsed.walk():
        if part is not parsed:
            assert set(part.keys()) <= MIME_PART_HEADERS, (case, part.keys())
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in header_block.split(b"\r\n")), case
    assert not message.recipients.filter(address__icontains="evil.example").exists(), case


def test_every_field_is_covered():
    fields = {name for name in SendMessageSerializer().fields if name != "report_suppressed"}
    fields |= {f"attachments.{name}" for name in AttachmentSerializer().fields}
    covered = {key.split(".")[0] for key in PLACEMENTS} | {key for key in PLACEMENTS if key.startswith("attach")}
    assert fields - {"attachments"} <= covered
    assert set(ACCEPTED) == set(PLACEMENTS)  # each place has its answers written down


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_line_breaks_and_nul_in_every_field_are_refused_or_encoded(api, placement):
    field, build = PLACEMENTS[placement]
    for value in HOSTILE:
        payload, case = build(value), f"{placement} {value!r}"
        before = counts()
        response = post(api, "/api/v1/messages", payload)
        assert response.status_code == expected_status(placement, value), (case, response.content)
        if response.status_code == 400:
            assert_refused(response.json(), field, case)
            assert counts() == before, case
        else:
            assert_built_safely(Message.objects.get(pk=response.json()["id"]), payload, case)


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_batch_refuses_or_encodes_each_hostile_item(api, placement):
    field, build = PLACEMENTS[placement]
    payloads = [build(value) for value in HOSTILE] + [base()]
    before = Message.objects.count()
    response = post(api, "/api/v1/messages/batch", {"messages": payloads})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["results"][-1]["status"] == 202  # the clean message goes through beside the hostile ones
    for payload, result, value in zip(payloads, body["results"], [*HOSTILE, ""], strict=True):
        case = f"{placement} {value!r}"
        assert result["status"] == (expected_status(placement, value) if value else 202), (case, result)
        if result["status"] == 400:
            assert_refused(result, field, case)
        else:
            assert_built_safely(Message.objects.get(pk=result["id"]), payload, case)
    assert Message.objects.count() == before + body["accepted"]


@pytest.mark.parametrize(
    "payload, field",
    [
        (base(subject="a" * 100_000), "subject"),
        (base(headers={"X-Long": "a" * 10_000}), "headers"),
        (base(headers={"X-" + "a" * 10_000: "1"}), "headers"),
        (base(to=["a" * 100_000 + " <jane@dest.example>"]), "to"),
        (base(to=["a" * 1_000 + " <jane@dest.example>"]), "to"),  # one word too long to fold (RFC 5322 §2.1.1)
        (base(to=["a" * 100_000 + "@dest.example"]), "to"),
        (base(**{"from": "A" * 5_000 + " <hello@acme.example>"}), "from"),
        (base(tags=["t" * 10_000]), "tags"),
        (base(metadata={"k" * 10_000: "1"}), "metadata"),
        (base(metadata={"k": "v" * 10_000}), "metadata"),
        (base(attachments=[attachment(filename="f" * 100_000)]), "attachments"),
        (base(attachments=[attachment(content_type="text/" + "x" * 10_000)]), "attachments"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_very_long_values_are_400_naming_the_field(api, payload, field):
    before = counts()
    response = post(api, "/api/v1/messages", payload)
    assert response.status_code == 400, response.content
    assert_refused(response.json(), field, field)
    assert counts() == before


def test_long_non_ascii_display_name_is_encoded_in_short_lines(api):
    payload = base(to=["Jörg " * 2_000 + "<jane@dest.example>"], subject="Grüße " * 150)
    response = post(api, "/api/v1/messages", payload)
    assert response.status_code == 202, response.content
    message = Message.objects.get()
    assert_built_safely(message, payload, "long non-ASCII")
    parsed = email.message_from_bytes(bytes(message.raw), policy=policy.default)
    # Python 3.11's parser puts a space between adjacent encoded words that split a word; RFC 2047 §6.2 says
    # that space is dropped (mail clients do), so compare without spaces.
    assert parsed["To"].addresses[0].display_name.replace(" ", "") == "Jörg" * 2_000


@pytest.mark.parametrize(
    "body",
    [
        b'{"from": "hello@acme.example", "to": ["j@dest.example"], "text": "\xff\xfe", "subject": "\xc3("}',
        b'{"from": "hello@acme.example", "to": ["j@dest.example"], "text": "x"',
        b"[" * 100_000 + b"]" * 100_000,  # json.loads recursion: was a 500
        b'{"from": "hello@acme.example", "to": ["j@dest.example"], "text": "x", "metadata": '
        + b'{"a": ' * 50_000
        + b"1"
        + b"}" * 50_001,
        b'{"from": "hello@acme.example", "to": ["j@dest.example"], "text": "x", "report_suppressed": NaN}',
        b'{"from": "hello@acme.example", "to": ["j@dest.example"], "text": "x", "tags": [' + b"9" * 5_000 + b"]}",
    ],
    ids=["invalid-utf8", "truncated", "nested-array", "nested-metadata", "nan", "huge-int"],
)
@pytest.mark.parametrize("url", ["/api/v1/messages", "/api/v1/messages/batch"])
def test_broken_json_is_400(api, body, url):
    before = counts()
    response = api.generic("POST", url, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "parse_error"
    assert counts() == before


@pytest.mark.parametrize("url", ["/api/v1/messages", "/api/v1/messages/batch"])
def test_surrogate_or_nul_in_a_dict_key_is_400_not_an_unrenderable_answer(api, url):
    # DRF keys a value's error by its key; a lone surrogate there made the JSON answer itself fail (a 500), and
    # NUL cannot be stored in PostgreSQL's jsonb.
    for payload, field in (
        (base(headers={"\ud800": 1}), "headers"),
        (base(metadata={"\ud800": 1}), "metadata"),
        (base(metadata={"a\x00": "1"}), "metadata"),
    ):
        before = counts()
        body = payload if url.endswith("messages") else {"messages": [payload]}
        response = post(api, url, body)
        if url.endswith("messages"):
            assert response.status_code == 400, response.content
            answer = response.json()
        else:
            assert response.status_code == 200, response.content  # the batch answers each item on its own
            answer = response.json()["results"][0]
            assert answer["status"] == 400, answer
        assert_refused(answer, field, repr(payload))
        assert counts() == before


def test_compressed_request_body_is_not_inflated(api):
    body = gzip.compress(json.dumps(base()).encode())
    response = api.generic("POST", "/api/v1/messages", body, content_type="application/json",
                           HTTP_CONTENT_ENCODING="gzip")  # fmt: skip
    assert response.status_code == 400 and response.json()["error"] == "parse_error"
    assert not Message.objects.exists()


@pytest.mark.parametrize("url", ["/api/v1/messages", "/api/v1/messages/batch"])
@pytest.mark.parametrize("size", [3_000_000, 1_100_000], ids=["over-the-body-cap", "over-once-built"])
def test_highly_compressible_attachment_over_the_limit_is_413(api, settings, url, size):
    """Zeros compress a thousandfold but still count at their real size: 413, nothing stored."""
    settings.POSTWERK_MAX_MESSAGE_SIZE = 1_000_000
    payload = base(attachments=[attachment(filename="zeros.bin", content=base64.b64encode(bytes(size)).decode())])
    before = counts()
    response = post(api, url, payload if url.endswith("messages") else {"messages": [payload]})
    if url.endswith("batch") and size == 1_100_000:
        # The batch body is within its cap: the item, once built, is what is too large.
        assert response.status_code == 200, response.content[:300]
        assert response.json()["results"] == [
            {
                "status": 413,
                "error": "too_large",
                "message": "The message is 1505911 bytes; the limit is 1000000 bytes.",
            }
        ]
    else:
        assert response.status_code == 413, response.content[:300]
        assert response.json()["error"] == "too_large"
    assert counts() == before


def test_archives_are_stored_as_given_never_inflated(api, settings):
    """A gzip bomb inside a zip inside a gzip: to us only bytes. The stored attachment is byte for byte what was
    sent, and the message is as small as the archive, so nothing was decompressed on the way."""
    settings.POSTWERK_MAX_MESSAGE_SIZE = 1_000_000
    inner = gzip.compress(bytes(50_000_000), compresslevel=9)  # 50 MB of zeros in ~50 KB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.gz", inner)
        archive.writestr("zeros.bin", bytes(20_000_000))
    outer = gzip.compress(buffer.getvalue())
    files = {"bomb.gz": inner, "nested.zip": buffer.getvalue(), "nested.zip.gz": outer}
    payload = base(
        attachments=[
            attachment(filename=name, content_type="application/octet-stream", content=base64.b64encode(data).decode())
            for name, data in files.items()
        ]
    )
    response = post(api, "/api/v1/messages", payload)
    assert response.status_code == 202, response.content
    message = Message.objects.get()
    assert message.size < 4 * sum(len(data) for data in files.values())
    parsed = email.message_from_bytes(bytes(message.raw), policy=policy.default)
    stored = {part.get_filename(): part.get_content() for part in parsed.iter_attachments()}
    assert stored == files


def test_overlong_idempotency_key_is_400_naming_it(api):
    before = counts()
    response = api.post("/api/v1/messages", base(), format="json", HTTP_IDEMPOTENCY_KEY="k" * 10_000)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["fields"]
    assert counts() == before


# --- the Postmark-compatible endpoints (sending.compat.postmark) ----------------------------------------------

POSTMARK_PLACEMENTS: dict[str, Callable[[object], dict]] = {
    "From": lambda v: {"From": f"Acme{v} <hello@acme.example>"},
    "To": lambda v: {"To": f"Jane{v} <jane@dest.example>"},
    "Cc": lambda v: {"Cc": v},
    "Bcc": lambda v: {"Bcc": v},
    "ReplyTo": lambda v: {"ReplyTo": f"x{v}@acme.example"},
    "Subject": lambda v: {"Subject": f"Hi{v}"},
    "TextBody": lambda v: {"TextBody": v},
    "HtmlBody": lambda v: {"HtmlBody": v},
    "Headers.Name": lambda v: {"Headers": [{"Name": f"X-A{v}", "Value": "x"}]},
    "Headers.Value": lambda v: {"Headers": [{"Name": "X-A", "Value": v}]},
    "Headers.shape": lambda v: {"Headers": v},
    "Attachments.Name": lambda v: {"Attachments": [{"Name": v, "Content": "eA==", "ContentType": "text/plain"}]},
    "Attachments.ContentType": lambda v: {"Attachments": [{"Name": "a", "Content": "eA==", "ContentType": v}]},
    "Attachments.ContentID": lambda v: {"Attachments": [{"Name": "a", "Content": "eA==", "ContentID": v}]},
    "Attachments.Content": lambda v: {"Attachments": [{"Name": "a", "Content": v}]},
    "Tag": lambda v: {"Tag": v},
    "Metadata": lambda v: {"Metadata": {"k": v}},
    "Metadata.key": lambda v: {"Metadata": {v if isinstance(v, str) else "k": "x"}},
    "MessageStream": lambda v: {"MessageStream": v},
    "TrackOpens": lambda v: {"TrackOpens": v},
    "TrackLinks": lambda v: {"TrackLinks": v},
}
POSTMARK_ODD_VALUES = [*HOSTILE, "x" * 100_000, 7, 1.5, True, None, [], {}, ["x"], {"a": "b"}]


def _postmark_post(client, path: str, body: object):  # type: ignore[no-untyped-def]
    return client.post(path, json.dumps(body), content_type="application/json")


def test_postmark_endpoints_answer_every_hostile_value_with_postmarks_json_never_a_500(api_key, domain):
    """Each placement gets every odd value in one batch (each item answered on its own), and every value of the
    wrong JSON type alone at /email."""
    from django.test import Client

    client = Client(HTTP_X_POSTMARK_SERVER_TOKEN=api_key)
    message = {"From": "hello@acme.example", "To": "jane@dest.example", "Subject": "Hi", "TextBody": "Hello"}
    for placement, make in POSTMARK_PLACEMENTS.items():
        bodies = [{**message, **make(value)} for value in POSTMARK_ODD_VALUES]
        batch = _postmark_post(client, "/email/batch", [*bodies, message])
        assert batch.status_code == 200, (placement, batch.content)
        answers = batch.json()
        assert len(answers) == len(bodies) + 1 and answers[-1]["ErrorCode"] == 0, (placement, answers[-1])
        for value, answer in zip(POSTMARK_ODD_VALUES, answers, strict=False):
            assert isinstance(answer["ErrorCode"], int) and isinstance(answer["Message"], str), (placement, value)
        for value in POSTMARK_ODD_VALUES[len(HOSTILE) :]:
            response = _postmark_post(client, "/email", {**message, **make(value)})
            assert response.status_code in (200, 422), (placement, value, response.status_code, response.content)
            assert isinstance(response.json()["ErrorCode"], int), (placement, value, response.content)
    for stored in Message.objects.all():
        parsed = email.message_from_bytes(bytes(stored.raw), policy=policy.SMTP)
        assert parsed.get_all("Bcc") is None
        assert [a.addr_spec for a in parsed["To"].addresses] == ["jane@dest.example"]
    for body in ("not json", "[", json.dumps([1, "x", None]), json.dumps("x"), json.dumps(None)):
        for path in ("/email", "/email/batch", "/email/withTemplate", "/email/batchWithTemplates"):
            response = client.post(path, body, content_type="application/json")
            assert response.status_code in (200, 422), (path, body, response.content)
            answer = response.json()
            items = answer if isinstance(answer, list) else [answer]
            assert all(isinstance(a["ErrorCode"], int) and a["ErrorCode"] != 0 for a in items), (path, body, answer)

"""Fuzzing the REST API from its own OpenAPI schema (schemathesis, in-process over WSGI): no 500s, and every
answer conforms to the schema (a documented status code, its content type, its body schema)."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient
from schemathesis import checks

from config.wsgi import application
from sending.models import Event, Reputation, WebhookDelivery
from sending.webhooks.fanout import webhook_fanout
from tests.servers.http_receiver import HttpReceiver

pytestmark = pytest.mark.django_db

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _load_schema() -> schemathesis.BaseSchema:
    """The schema the API serves at /api/schema/, generated in-process (no request, no database)."""
    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    loaded.app = application  # calls go in-process through WSGI, like a request from outside
    return loaded


schema = _load_schema()


@pytest.fixture(autouse=True)
def connection_kept_open(settings, existing):  # type: ignore[no-untyped-def]
    """As Django's test client does: the test's transaction holds the connection, so requests must not close
    it. After `existing`, whose test client reconnects close_old_connections when each request ends."""
    settings.POSTWERK_WEBHOOK_TIMEOUT = 1.0
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def existing(api_key, domain, settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """One real object of each kind the paths name, made through the API, so that generated requests reach past
    the 404 into the views. Unlimited rate: hundreds of requests a second would otherwise be mostly 429s."""
    settings.POSTWERK_API_RATE_LIMIT = 0
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")

    def made(path: str, body: dict, status_code: int = 201) -> dict:
        response = client.post(path, body, format="json")
        assert response.status_code == status_code, (path, response.content)
        return response.json()

    with HttpReceiver() as receiver:
        ids = {
            "domain_id": domain.pk,
            "endpoint_id": made("/api/v1/webhooks", {"url": receiver.url()})["id"],
            "message_id": made(
                "/api/v1/messages",
                {"from": "hello@acme.example", "to": ["jane@dest.example"], "subject": "Hi", "text": "Hello"},
                202,
            )["id"],
            "credential_id": made("/api/v1/smtp-credentials", {"name": "app"})["id"],
            # Not the fuzzing key itself: a generated DELETE would revoke it and leave the rest 401s.
            "key_id": made("/api/v1/api-keys", {"name": "fuzzed", "scopes": ["send"]})["id"],
            "address": made("/api/v1/suppressions", {"address": "gone@dest.example", "reason": "manual"})["address"],
            "job_id": made("/api/v1/verifications", {"addresses": ["a@dest.example", "b@dest.example"]}, 202)["id"],
        }
        ids["event_id"] = Event.objects.filter(message_id=ids["message_id"]).values_list("pk", flat=True).first()
        webhook_fanout()
        ids["delivery_id"] = WebhookDelivery.objects.values_list("pk", flat=True).first()
        client.get("/api/v1/reputation")  # the organization's reputation rows exist once asked for
        ids["reputation_id"] = Reputation.objects.values_list("pk", flat=True).first()
    return {name: str(value) for name, value in ids.items() if value is not None}


@schema.parametrize()
@hypothesis_settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case, api_key, existing):
    # Valid requests name real objects; invalid ones keep whatever was generated. Schemathesis's negative cases
    # also drop the Authorization header on purpose (the security scheme is a required header): those are the
    # 401s, and the header passed here is not sent for them.
    if case.path_parameters and case.meta is not None and not case.meta.generation.mode.is_negative:
        case.path_parameters = {name: existing.get(name, value) for name, value in case.path_parameters.items()}
    case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"}, checks=CHECKS)


# --- What the conformance run found, pinned -------------------------------------------------------------


def test_every_operation_documents_its_json_errors():
    for path, operations in schema.raw_schema["paths"].items():
        for method, operation in operations.items():
            for code in ("400", "401", "403", "429", "503", *(("404",) if "{" in path else ())):
                content = operation["responses"][code]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path, code)
    listed = schema.raw_schema["paths"]["/api/v1/messages"]["get"]["responses"]["200"]["content"]
    page = schema.raw_schema["components"]["schemas"][listed["application/json"]["schema"]["$ref"].split("/")[-1]]
    assert {"next", "previous", "results"} <= set(page["properties"])  # a cursor page, not a bare array
    assert "from" in schema.raw_schema["components"]["schemas"]["MessageSummary"]["properties"]


def test_unrouted_api_path_is_a_json_404(api, client):
    for answer in (api.get("/api/v1/messages/not-a-uuid"), client.post("/api/v1/nothing-here", {})):
        assert answer.status_code == 404 and answer["Content-Type"] == "application/json", answer.content
        assert answer.json()["error"] == "not_found"


def test_unreadable_cursor_is_400_naming_it(api):
    answer = api.get("/api/v1/events", {"cursor": "¡0\x01"})
    assert answer.status_code == 400 and "cursor" in answer.json()["fields"]


def test_csv_endpoint_answers_errors_as_json(client, db):
    answer = client.get("/api/v1/verifications/e3e70682-c209-1cac-a29f-6fbed82c07cd/results.csv?format=csv")
    assert answer.status_code == 401 and answer["Content-Type"] == "application/json"

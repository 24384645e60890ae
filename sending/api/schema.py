"""The error answers of the OpenAPI schema, added to every operation in one place (a drf-spectacular
postprocessing hook): views declare only their success, and every error has the body of errors.error_body."""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "A stable code: invalid, not_found, too_large, conflict..."},
        "message": {"type": "string"},
        "fields": {
            "type": "object",
            "additionalProperties": True,
            "description": "For bad input: each wrong field (nested for lists and objects) with its problems.",
        },
        "required_scope": {
            "type": "string",
            "description": "403 missing_scope or role_forbids: the scope this endpoint needs (accounts.scopes)",
        },
    },
    "required": ["error", "message"],
}
DESCRIPTIONS = {
    400: "Bad input; `fields` names each wrong field",
    401: "Missing, invalid or revoked API key",
    403: "Not allowed: the key lacks the endpoint's scope (`required_scope`), its member's role or its network "
    "forbids it, or the organization may not (e.g. a From domain it does not own or has not verified)",
    404: "No such object in this organization",
    409: "Conflicts with the object's current state",
    413: "Over POSTWERK_MAX_MESSAGE_SIZE",
    415: "The body is not JSON",
    422: "The Idempotency-Key was used with a different body",
    429: "Over the key's rate limit, paused or over a send limit; see Retry-After",
    503: "The database could not be reached; nothing was done, try again",
}
# Every operation: input checks, authentication, scopes, the rate limit and a database outage.
COMMON = frozenset({400, 401, 403, 429, 503})
# What particular views raise beyond the common set (ApiError in sending/api/*.py).
EXTRA: dict[tuple[str, str], frozenset[int]] = {
    ("post", "/api/v1/messages"): frozenset({403, 413, 422}),
    ("post", "/api/v1/messages/batch"): frozenset({413, 422}),
    ("post", "/api/v1/domains"): frozenset({409}),
    ("delete", "/api/v1/domains/{domain_id}"): frozenset({409}),
    ("post", "/api/v1/reputation/{reputation_id}/resume"): frozenset({403, 409}),
    ("put", "/api/v1/reputation/{reputation_id}/thresholds"): frozenset({403}),
    ("patch", "/api/v1/reputation/{reputation_id}/thresholds"): frozenset({403}),
    ("post", "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay"): frozenset({409}),
    ("post", "/api/v1/api-keys/{key_id}/rotate"): frozenset({409}),
    ("post", "/api/v1/api-keys/{key_id}/ses-access-key"): frozenset({409}),
    ("post", "/api/v1/messages/{message_id}/cancel"): frozenset({409}),
    ("post", "/api/v1/inbound/{inbound_id}/retry"): frozenset({409}),
    ("post", "/api/v1/inbound/{inbound_id}/release"): frozenset({409}),
    ("post", "/api/v1/templates"): frozenset({409}),
    ("put", "/api/v1/templates/{ref}"): frozenset({409}),
    ("patch", "/api/v1/templates/{ref}"): frozenset({409}),
    ("delete", "/api/v1/templates/{ref}"): frozenset({409}),
}


def error_responses(result: dict, generator: object, request: object, public: bool) -> dict:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            codes = set(COMMON) | EXTRA.get((method, path), frozenset())
            if "{" in path:
                codes.add(404)
            if "requestBody" in operation:
                codes.add(415)
            responses = operation.setdefault("responses", {})
            for code in sorted(codes):
                responses.setdefault(str(code), {"description": DESCRIPTIONS[code], "content": body})
    return result

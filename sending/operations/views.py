"""Plain Django views: the health check (the dashboard lives in the dashboard app)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from sending.operations.health import broker_ok, database_ok


def healthz(request: HttpRequest) -> JsonResponse:
    db, db_detail = database_ok()
    broker, broker_detail = broker_ok()
    body = {
        "status": "ok" if db and broker else "unavailable",
        "database": {"ok": db, "detail": db_detail},
        "broker": {"ok": broker, "detail": broker_detail},
    }
    return JsonResponse(body, status=200 if db and broker else 503)

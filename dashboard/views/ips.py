"""Sending IPs: the organization's (its pools' and the shared default pool's) and, for operators, every one: warm-up
day, today's use against the allowance, what providers asked of each IP, listings and its own reputation. Read
only: operators change IPs and pools in the admin or with `manage.py ips`."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from dashboard.access import org_view, staff_view
from dashboard.views.common import page
from sending.reputation.ip_status import ip_statuses


@org_view()
def ips(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    rows = ip_statuses(request.organization.pk, now)
    return page(request, "dashboard/ips.html", {"section": "ips", "ips": rows, "now": now, "everyone": False})


@staff_view
def ops_ips(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    return page(
        request,
        "dashboard/ips.html",
        {"section": "ops_ips", "ips": ip_statuses(None, now), "now": now, "everyone": True},
    )

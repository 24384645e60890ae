"""The audit log page: who changed what, when and from where; newest first, filtered, paged by id."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from accounts.models import AuditEntry
from dashboard.access import org_view
from dashboard.views.common import page

PAGE_SIZE = 100


@org_view("admin")
def audit_log(request: HttpRequest) -> HttpResponse:
    qs = AuditEntry.objects.filter(organization=request.organization).order_by("-id")
    action = request.GET.get("action", "").strip()
    actor = request.GET.get("actor", "").strip()
    if action:
        qs = qs.filter(action__startswith=action)
    if actor:
        qs = qs.filter(actor__icontains=actor)
    before = request.GET.get("before", "")
    if before.isdigit() and len(before) < 19:
        qs = qs.filter(id__lt=int(before))
    entries = list(qs[: PAGE_SIZE + 1])
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    return page(
        request,
        "dashboard/audit.html",
        {
            "section": "audit",
            "entries": entries,
            "filters": {"action": action, "actor": actor},
            "next_before": entries[-1].pk if more else None,
            "actions": AuditEntry.objects.filter(organization=request.organization)
            .order_by("action")
            .values_list("action", flat=True)
            .distinct(),
        },
    )

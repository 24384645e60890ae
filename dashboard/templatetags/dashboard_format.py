"""Template filters for numbers the dashboard shows."""

from __future__ import annotations

from django import template
from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from sending.models import Reputation, ReputationState

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 2) -> str:
    """0.0512 → "5.12 %". Complaint thresholds live around 0.1 %, so two decimals by default."""
    if value is None:
        return "—"
    return f"{float(value) * 100:.{int(digits)}f} %"


SCOPE_LABELS = {
    "organization": "Organization",
    "domain": "Domain",
    "api_key": "API key",
    "smtp_credential": "SMTP credential",
}


@register.filter
def scope_label(scope: str) -> str:
    return SCOPE_LABELS.get(scope, scope)


@register.filter
def threshold(value: float | None) -> str:
    """A threshold as typed: 0.025 → "2.5 %", 0.001 → "0.1 %" (no rounding that hides a stricter setting)."""
    if value is None:
        return "—"
    return f"{float(value) * 100:.6g} %"


@register.simple_tag
def reputation_badge(rep: Reputation) -> str:
    """A scope's state as a badge. An `ok` that no rule has judged yet is not shown as a green "ok": before the
    first recompute it is "not computed yet", and below POSTWERK_REPUTATION_MIN_DELIVERIES outcomes the rates
    (11 % bounces of 45 outcomes, say) are not judged at all, which a green badge beside them would hide."""
    minimum = settings.POSTWERK_REPUTATION_MIN_DELIVERIES
    if rep.state == ReputationState.OK and rep.computed_at is None:
        return mark_safe('<span class="badge">not computed yet</span>')  # noqa: S308 - a constant
    if rep.state == ReputationState.OK and rep.deliveries < minimum:
        return format_html('<span class="badge">not judged yet ({} of {} outcomes)</span>', rep.deliveries, minimum)
    css = {ReputationState.PAUSED: "error", ReputationState.WARNING: "warning"}.get(rep.state, "ok")
    return format_html('<span class="badge badge-{}">{}</span>', css, rep.state)

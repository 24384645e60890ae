"""Template filters for numbers the dashboard shows."""

from __future__ import annotations

from django import template

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

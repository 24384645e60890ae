"""The overview's and the statistics page's charts in headless Chromium, at desktop (1400 px) and phone (390 px)
widths: each chart is drawn with data, hovering it shows a tooltip with a value, and the table under it has the
numbers GET /api/v1/stats answers. The browser, the live server and the console-error check are test_browser's."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import datetime, timedelta

import pytest
from django.test import Client

from accounts.scopes import Scope
from accounts.services import api_key_create
from sending.feedback.tracking import open_url, tracking_base
from sending.models import Recipient, RecipientState
from sending.states import complaint_recorded

pytestmark = pytest.mark.django_db(transaction=True)

WIDTHS = ((1400, 900), (390, 844))
BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Safari/537.36"

# Each chart's table columns, as the API's fields.
OVERVIEW = {
    "chart-outcomes": ["delivered", "deferred", "bounced", "complained", "sent"],
    "chart-bounce-rate": ["bounce_rate"],
    "chart-complaint-rate": ["complaint_rate"],
    "chart-engagement": ["opened_unique", "opened", "machine_opened", "clicked_unique", "clicked"],
}
RATES = {"bounce_rate", "complaint_rate"}


def shown(value: object, field: str) -> str:
    """An API value as the table shows it (dashboard.charts.format_value)."""
    if value is None:
        return "—"
    return f"{value * 100:.2f} %" if field in RATES else str(value)  # type: ignore[operator]


def api_get(base: str, key: str, params: dict) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the live test server, http only
        f"{base}/api/v1/stats?{urllib.parse.urlencode(params)}", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


@pytest.fixture
def opened(delivered, domain, settings):  # type: ignore[no-untyped-def]
    """The delivered message opened by a person (twice) and by a privacy proxy, then complained about."""
    settings.POSTWERK_TRACKING_HOST = "track.postwerk.example"
    recipient = Recipient.objects.get(state=RecipientState.DELIVERED)
    pixel = urllib.parse.urlsplit(open_url(tracking_base(domain), recipient.pk)).path
    client = Client()
    for agent in (BROWSER_AGENT, BROWSER_AGENT, "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"):
        assert client.get(pixel, HTTP_USER_AGENT=agent, REMOTE_ADDR="198.51.100.7").status_code == 200
    complaint_recorded(recipient, {"source": "arf"})
    return delivered


def table(ui, chart_id: str) -> list[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    """The chart's table, opened the way a person opens it: (row's time or label, cells)."""
    figure = ui.page.locator(f"#{chart_id}-figure")
    details = figure.locator("details")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    rows = []
    for row in figure.locator("tbody tr").all():
        head = row.locator("th")
        time = head.locator("time")
        key = time.get_attribute("datetime") if time.count() else head.inner_text()
        rows.append((key, [cell.inner_text() for cell in row.locator("td").all()]))
    return rows


def drawn_and_hovered(ui, chart_id: str) -> str:  # type: ignore[no-untyped-def]
    """Wait for Chart.js to draw the chart with data, hover its last non-empty point, return the tooltip's text."""
    page = ui.page
    page.wait_for_function(
        "id => window.Chart && Chart.getChart(document.getElementById(id))", arg=chart_id, timeout=10_000
    )
    point = page.evaluate(
        """id => {
            const chart = Chart.getChart(document.getElementById(id));
            for (let d = 0; d < chart.data.datasets.length; d++) {
                const set = chart.data.datasets[d];
                if (set.borderDash) continue;  // a threshold line
                for (let i = set.data.length - 1; i >= 0; i--) {
                    if (set.data[i]) {
                        const el = chart.getDatasetMeta(d).data[i];
                        return {x: el.x, y: el.y, value: set.data[i]};
                    }
                }
            }
            return null;
        }""",
        chart_id,
    )
    assert point is not None, f"{chart_id} is drawn without data"
    canvas = page.locator(f"#{chart_id}")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, (chart_id, box)
    page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
    tooltip = page.locator(f"#{chart_id}-tooltip")
    tooltip.wait_for(state="visible")
    return tooltip.inner_text()


def test_overview_charts_are_drawn_hover_to_a_value_and_tables_match_the_api(ui, owner, organization, opened):
    _, key = api_key_create(organization=organization, name="stats", scopes=[Scope.STATS_READ])
    ui.login("owner")
    for width, height in WIDTHS:
        ui.page.set_viewport_size({"width": width, "height": height})
        ui.go(f"/o/{organization.pk}/?period=24h")
        tips = {chart_id: drawn_and_hovered(ui, chart_id) for chart_id in OVERVIEW}
        assert "Delivered: 1" in tips["chart-outcomes"] and "Sent: 2" in tips["chart-outcomes"]
        assert "Bounce rate: 50.00 %" in tips["chart-bounce-rate"]
        assert "Complaint rate: 100.00 %" in tips["chart-complaint-rate"]
        assert "Opens (unique): 1" in tips["chart-engagement"] and "Opens (total): 2" in tips["chart-engagement"]
        ui.page.mouse.move(0, 0)
        ui.shot(f"40-overview-charts-{width}")
        assert ui.page.evaluate("document.documentElement.scrollWidth") <= width

        first_row = table(ui, "chart-outcomes")
        start = datetime.fromisoformat(first_row[0][0])
        end = datetime.fromisoformat(first_row[-1][0]) + timedelta(hours=1)
        body = api_get(ui.base, key, {"from": start.isoformat(), "to": end.isoformat(), "interval": "hour"})
        by_time = {p["time"]: p for p in body["series"]}
        for chart_id, fields in OVERVIEW.items():
            rows = table(ui, chart_id)
            assert len(rows) == 24 == len(body["series"])
            assert rows == [(t, [shown(by_time[t][f], f) for f in fields]) for t, _ in rows], chart_id
        assert body["totals"]["delivered"] == 1 and body["totals"]["opened"] == 2


def test_statistics_page_breakdowns_and_delivery_times(ui, owner, organization, opened):
    _, key = api_key_create(organization=organization, name="stats", scopes=[Scope.STATS_READ])
    ui.login("owner")
    for width, height in WIDTHS:
        ui.page.set_viewport_size({"width": width, "height": height})
        ui.go(f"/o/{organization.pk}/statistics/?period=30d")
        assert "Delivered: 1" in drawn_and_hovered(ui, "chart-by-provider")
        assert "Delivered: 1" in drawn_and_hovered(ui, "chart-by-tag")
        assert "p50: ≤ " in drawn_and_hovered(ui, "chart-delivery-time")
        ui.page.mouse.move(0, 0)
        ui.shot(f"41-statistics-{width}")
        assert ui.page.evaluate("document.documentElement.scrollWidth") <= width

        days = table(ui, "chart-outcomes")
        assert len(days) == 30
        start = datetime.fromisoformat(days[0][0])
        params = {"from": start.isoformat(), "to": (start + timedelta(days=30)).isoformat(), "interval": "day"}
        for group_by in ("provider", "tag", "domain"):
            body = api_get(ui.base, key, {**params, "group_by": group_by})
            expected = [
                (g["label"], [str(g["totals"][f]) for f in ("delivered", "deferred", "bounced", "complained")])
                for g in body["groups"]
            ]
            assert table(ui, f"chart-by-{group_by}") == expected, group_by

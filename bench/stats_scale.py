#!/usr/bin/env python
"""The overview page, the statistics page and GET /api/v1/stats with a year of data at 10 million recipients (#27).

Generates, with SQL generate_series on PostgreSQL, the StatsCounter rows that a year of sending writes (the
counters sending.states keeps with the events; sending.stats): --recipients spread over the last 365 days with a
daily rhythm, over 3 sender domains, 2 streams, 5 recipient providers and 5 tags, with every metric the counters
carry (accepted, sent, delivered, deferred, bounces, complaints, opens and clicks unique and total, machine opens,
delivery-time buckets) drawn per hour and combination with random rounding (rare combinations have no count, as
in real data), then added up per dimension value (all mail, domain, stream, provider, tag) as the counting code
writes them, and the day rows as the sums of the hours. With --messages it also writes the Message and Recipient
rows themselves (slower; the overview's "needs attention" reads recipients), one message per --per-message
recipients.

Then it times, in this process through Django's test client (no HTTP server, no network), each page and API call
--repeat times and prints the median and best wall time, the queries each made and the counter rows the stats
query read (EXPLAIN ANALYZE): the counts do not depend on the machine's load, the times do.

    .venv/bin/python bench/stats_scale.py                       # 10,000,000 recipients, counters only
    .venv/bin/python bench/stats_scale.py --recipients 100000   # quick
    .venv/bin/python bench/stats_scale.py --reuse               # time again without generating

Needs PostgreSQL (default postgres://postgres@127.0.0.1:5432/postwerk_bench_stats; created when missing, migrated,
its bench organization's rows replaced). Do not point it at data you want to keep.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROVIDERS = (("gmail", 0.42), ("microsoft", 0.24), ("yahoo", 0.1), ("apple", 0.09), ("other", 0.15))
TAGS = (("welcome", 0.3), ("password-reset", 0.25), ("receipt", 0.2), ("digest", 0.15), ("alert", 0.1))
DOMAIN_SHARES = (0.6, 0.3, 0.1)
STREAM_SHARES = (0.7, 0.3)
# Per recipient sent: how many of each metric (the delivery-time buckets split the delivered).
RATES = (
    ("sent", 1.0),
    ("delivered", 0.955),
    ("deferred", 0.06),
    ("bounced", 0.03),
    ("bounced_hard", 0.018),
    ("bounced_soft", 0.012),
    ("failed", 0.005),
    ("complained", 0.0008),
    ("opened", 0.42),
    ("opened_unique", 0.24),
    ("machine_opened", 0.2),
    ("machine_opened_unique", 0.14),
    ("clicked", 0.07),
    ("clicked_unique", 0.045),
    ("unsubscribed", 0.002),
    ("dt_1", 0.45),
    ("dt_2", 0.25),
    ("dt_5", 0.15),
    ("dt_30", 0.07),
    ("dt_600", 0.03),
    ("dt_7200", 0.005),
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postwerk_bench_stats")
    p.add_argument("--recipients", type=int, default=10_000_000, help="recipients over the year")
    p.add_argument("--messages", action="store_true", help="also write Message and Recipient rows")
    p.add_argument("--per-message", type=int, default=10, help="recipients per message (with --messages)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs of each page and call")
    p.add_argument("--reuse", action="store_true", help="time the data already there")
    return p.parse_args()


def setup_django(database_url: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(48),
        POSTWERK_ENCRYPTION_KEY=os.environ.get("POSTWERK_ENCRYPTION_KEY") or secrets.token_urlsafe(32),
        POSTWERK_HOSTNAME="mta.bench.example",
        LOG_LEVEL="WARNING",
        DEBUG="false",
    )
    os.environ.pop("CELERY_BROKER_URL", None)
    from urllib.parse import urlsplit

    import psycopg

    u = urlsplit(database_url)
    name = u.path.lstrip("/")
    with psycopg.connect(
        host=u.hostname, port=u.port or 5432, user=u.username, dbname="postgres", autocommit=True
    ) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            print(f"creating database {name}", file=sys.stderr)
            c.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def values_sql(rows: tuple[tuple[object, ...], ...]) -> str:
    """A VALUES list of constants written by this script (no input from outside)."""
    return ", ".join(
        "("
        + ", ".join(repr(v) if isinstance(v, float) else f"'{v}'" if isinstance(v, str) else str(v) for v in row)
        + ")"
        for row in rows
    )


def generate(org_id: int, domain_ids: list[int], stream_ids: list[int], recipients: int) -> None:
    from django.db import connection

    per_hour = recipients / (365 * 24)
    domains = values_sql(tuple(zip(domain_ids, DOMAIN_SHARES, strict=True)))
    streams = values_sql(tuple(zip(stream_ids, STREAM_SHARES, strict=True)))
    columns = "organization_id, span, dimension, start, metric, key, count"
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM sending_statscounter WHERE organization_id = %s", [org_id])
        # Built once at the end (a sorted build) rather than row by row.
        cursor.execute("ALTER TABLE sending_statscounter DROP CONSTRAINT IF EXISTS stats_counter_key")
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET work_mem = '256MB'")
        log(f"{recipients:,} recipients, {per_hour:.0f} an hour on average: deliveries per hour and combination")
        started = time.monotonic()
        # What a year of sending counts, per (hour, domain, stream, provider, tag, metric), randomly rounded so
        # that rare combinations have no row; the hour's volume follows the day (busiest mid-afternoon UTC).
        # Each recipient here has one tag, so the tag rows add up to the others.
        cursor.execute("DROP TABLE IF EXISTS bench_stats_base")
        cursor.execute(
            f"""
            CREATE UNLOGGED TABLE bench_stats_base AS
            SELECT h, m.metric, d.id AS domain_id, s.id AS stream_id, p.provider, t.tag, c.n
            FROM generate_series(date_trunc('hour', now()) - interval '365 days' + interval '1 hour',
                                 date_trunc('hour', now()), interval '1 hour') AS h
            CROSS JOIN (VALUES {domains}) AS d(id, share)
            CROSS JOIN (VALUES {streams}) AS s(id, share)
            CROSS JOIN (VALUES {values_sql(PROVIDERS + (("", 0.0),))}) AS p(provider, share)
            CROSS JOIN (VALUES {values_sql(TAGS)}) AS t(tag, share)
            CROSS JOIN (VALUES {values_sql(RATES + (("accepted", 1.0),))}) AS m(metric, rate)
            CROSS JOIN LATERAL (
                SELECT floor(
                    {per_hour!r} * (1 + 0.6 * sin(2 * pi() * (extract(hour FROM h) - 9) / 24))
                    * d.share * s.share * t.share
                    * CASE WHEN m.metric = 'accepted' THEN (CASE WHEN p.provider = '' THEN 1 ELSE 0 END)
                           ELSE p.share END
                    * m.rate + random()
                )::bigint AS n
            ) AS c
            WHERE c.n > 0
            """  # noqa: S608 - constants of this script only
        )
        log(f"  {cursor.rowcount:,} combinations in {time.monotonic() - started:.0f} s; the counter rows")
        for dimension, key in (
            ("", "''"),
            ("domain", "domain_id::text"),
            ("stream", "stream_id::text"),
            ("provider", "provider"),
            ("tag", "tag"),
        ):
            cursor.execute(
                f"INSERT INTO sending_statscounter ({columns})"  # noqa: S608 - constants of this script only
                f" SELECT {org_id}, 'h', '{dimension}', h, metric, {key}, sum(n) FROM bench_stats_base"
                " GROUP BY h, metric, 6"
            )
            log(f"  hour rows of dimension {dimension or 'all'}: {cursor.rowcount:,}")
        cursor.execute(
            f"INSERT INTO sending_statscounter ({columns})"  # noqa: S608
            " SELECT organization_id, 'd', dimension, date_trunc('day', start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
            " metric, key, sum(count) FROM sending_statscounter WHERE organization_id = %s AND span = 'h'"
            " GROUP BY 1, 3, 4, 5, 6",
            [org_id],
        )
        log(f"  day rows (sums of the hours): {cursor.rowcount:,}; the unique index")
        cursor.execute("DROP TABLE bench_stats_base")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute(
            "ALTER TABLE sending_statscounter ADD CONSTRAINT stats_counter_key UNIQUE (organization_id, span,"
            " dimension, start, metric, key)"
        )
        log(f"  {time.monotonic() - started:.0f} s in all")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE sending_statscounter")


def generate_messages(org_id: int, domain_ids: list[int], stream_ids: list[int], recipients: int, per: int) -> None:
    """Message and Recipient rows of the year (delivered, a few bounced), one message per `per` recipients."""
    from django.db import connection

    messages = recipients // per
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM sending_recipient WHERE organization_id = %s", [org_id])
        cursor.execute("DELETE FROM sending_message WHERE organization_id = %s", [org_id])
        log(f"{messages:,} messages")
        cursor.execute(
            """
            INSERT INTO sending_message (id, organization_id, domain_id, message_id, mail_from, subject, tags,
                metadata, raw, size, smtputf8, created_at, sandbox, stream_id, priority)
            SELECT (lpad(to_hex(i), 12, '0') || '7000' || '8000' || lpad(to_hex(i), 12, '0'))::uuid, %(org)s,
                   (%(domains)s::bigint[])[1 + i %% 3], '<' || i || '@bench.example>', 'app@bench.example', 'Hello',
                   '["welcome"]'::jsonb, '{}'::jsonb, 'x'::bytea, 200, false,
                   now() - (i::float / %(n)s) * interval '365 days', false,
                   (%(streams)s::bigint[])[1 + i %% 2], 'normal'
            FROM generate_series(1, %(n)s) AS i
            """,
            {"org": org_id, "n": messages, "domains": domain_ids, "streams": stream_ids},
        )
        log(f"{messages * per:,} recipients")
        cursor.execute(
            """
            INSERT INTO sending_recipient (id, message_id, organization_id, address, domain, kind, state, attempts,
                next_attempt_at, created_at, updated_at, event_seq, delivered_at, finished_at, bounce_kind,
                mx_host, last_enhanced, last_text, held_reason, sending_ip, lane, priority, tls)
            SELECT gen_random_uuid(), m.id, %(org)s, 'r' || r || '@d' || (r %% 1000) || '.example',
                   'd' || (r %% 1000) || '.example', 'to',
                   CASE WHEN r %% 50 = 0 THEN 'bounced' ELSE 'delivered' END, 1, NULL,
                   m.created_at, m.created_at, 3, m.created_at, m.created_at,
                   CASE WHEN r %% 50 = 0 THEN 'hard' ELSE '' END, 'mx.d' || (r %% 1000) || '.example', '', '', '',
                   '', '', 0, true
            FROM sending_message m CROSS JOIN generate_series(1, %(per)s) AS r
            WHERE m.organization_id = %(org)s
            """,
            {"org": org_id, "per": per},
        )
        cursor.execute("VACUUM ANALYZE sending_message")
        cursor.execute("VACUUM ANALYZE sending_recipient")


def timed(label: str, call, repeat: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    call()  # warm: templates compiled, the plan cache and shared buffers filled
    times, queries = [], 0
    for _ in range(repeat):
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = call()
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (label, response.status_code, response.content[:300])
        queries = len(captured.captured_queries)
    return {"what": label, "median_ms": statistics.median(times), "best_ms": min(times), "queries": queries}


def rows_read(org_id: int, start, end, span: str, dimension: str) -> int:  # type: ignore[no-untyped-def]
    """Counter rows the stats query reads for one range (EXPLAIN ANALYZE: a count, not a time)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT start, dimension, key, metric, sum(count) FROM sending_statscounter"
            " WHERE organization_id = %s AND span = %s AND dimension IN ('', %s) AND start >= %s AND start < %s"
            " GROUP BY 1, 2, 3, 4",
            [org_id, span, dimension, start, end],
        )
        plan = cursor.fetchone()[0]
    plan = plan[0] if isinstance(plan, list) else plan

    def scanned(node: dict) -> int:
        own = node.get("Actual Rows", 0) if "Scan" in node.get("Node Type", "") else 0
        return own + sum(scanned(child) for child in node.get("Plans", []))

    return scanned(plan["Plan"])


def main() -> int:
    args = parse_args()
    setup_django(args.database_url)
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from accounts.models import Membership
    from accounts.scopes import Scope
    from accounts.services import api_key_create, organization_get_or_create
    from sending.models import Domain, StatsCounter, Stream

    org, _ = organization_get_or_create(name="Stats bench")
    domain_ids = [
        Domain.objects.get_or_create(organization=org, name=f"d{i}.stats-bench.example")[0].pk for i in range(3)
    ]
    stream_ids = [
        Stream.objects.get_or_create(organization=org, name=name, defaults={"kind": kind})[0].pk
        for name, kind in (("outbound", "transactional"), ("newsletter", "broadcast"))
    ]
    if not args.reuse:
        generate(org.pk, domain_ids, stream_ids, args.recipients)
        if args.messages:
            generate_messages(org.pk, domain_ids, stream_ids, args.recipients, args.per_message)
    rows = StatsCounter.objects.filter(organization=org)
    total_sent = sum(rows.filter(span="d", dimension="", metric="sent").values_list("count", flat=True))
    log(f"counter rows: {rows.count():,} ({rows.filter(span='h').count():,} hourly); recipients sent: {total_sent:,}")

    user, _ = get_user_model().objects.get_or_create(username="stats-bench")
    Membership.objects.get_or_create(organization=org, user=user, defaults={"role": "owner"})
    _, key = api_key_create(organization=org, name=f"stats bench {secrets.token_hex(4)}", scopes=[Scope.STATS_READ])
    page, api = Client(), Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    page.force_login(user)
    now = timezone.now()
    year = {"from": (now - timedelta(days=364)).date().isoformat(), "interval": "day"}
    calls = [
        ("overview, last 24 hours", lambda: page.get(f"/o/{org.pk}/?period=24h")),
        ("overview, last 7 days", lambda: page.get(f"/o/{org.pk}/?period=7d")),
        ("overview, last 30 days", lambda: page.get(f"/o/{org.pk}/?period=30d")),
        ("statistics page, last 365 days", lambda: page.get(f"/o/{org.pk}/statistics/?period=365d")),
        ("GET /api/v1/stats (7 days by day)", lambda: api.get("/api/v1/stats")),
        ("GET /api/v1/stats (24 h by hour)", lambda: api.get("/api/v1/stats", {"interval": "hour"})),
        ("GET /api/v1/stats (365 days by day)", lambda: api.get("/api/v1/stats", year)),
        ("… group_by=provider", lambda: api.get("/api/v1/stats", {**year, "group_by": "provider"})),
        ("… group_by=tag", lambda: api.get("/api/v1/stats", {**year, "group_by": "tag"})),
        (
            "… as CSV, group_by=domain",
            lambda: api.get("/api/v1/stats", {**year, "group_by": "domain"}, HTTP_ACCEPT="text/csv"),
        ),
        (
            "GET /api/v1/stats (30 days by hour)",
            lambda: api.get("/api/v1/stats", {"interval": "hour", "from": (now - timedelta(days=30)).isoformat()}),
        ),
    ]
    results = [timed(label, call, args.repeat) for label, call in calls]
    print(f"\n{'what':45} {'median ms':>10} {'best ms':>9} {'queries':>8}")
    for r in results:
        print(f"{r['what']:45} {r['median_ms']:10.1f} {r['best_ms']:9.1f} {r['queries']:8}")
    print("\ncounter rows the stats query reads (EXPLAIN ANALYZE):")
    for label, start, span, dimension in (
        ("24 h by hour", now - timedelta(hours=24), "h", ""),
        ("30 days by day", now - timedelta(days=30), "d", ""),
        ("365 days by day", now - timedelta(days=365), "d", ""),
        ("365 days by day, by tag", now - timedelta(days=365), "d", "tag"),
    ):
        print(f"  {label:26} {rows_read(org.pk, start, now, span, dimension):>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

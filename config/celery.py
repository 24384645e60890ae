"""The Celery application: the distributed engine behind delivery and every periodic job."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init
from django.db import DEFAULT_DB_ALIAS
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# filesystem:// (the embedded default) means our transport, which writes each message atomically.
TRANSPORT_ALIASES["filesystem"] = "config.filesystem_broker:Transport"

app = Celery("postwerk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Services publish tasks by name (app.send_task) and never import their own task modules: the tasks import the
# services, and nothing goes the other way. Each name is defined once, beside the service that publishes it.


@worker_init.connect
def _no_health_check_per_task(**_: object) -> None:
    """Celery's Django fixup runs close_old_connections() around every task; with CONN_HEALTH_CHECKS that means a
    `SELECT 1` round trip before each task's first query. Workers do without: a connection whose query failed is
    still tested and replaced by that same hook, so a restarted database costs one failed task (retried by the
    sweep), not a check per task. Every connection this process opens shares this settings dict."""
    from django.db import connections

    connections.settings[DEFAULT_DB_ALIAS]["CONN_HEALTH_CHECKS"] = False


@worker_init.connect
def _lower_priority(**_: object) -> None:
    """Delivery is batch work that a second's wait does not hurt; the web and SMTP front ends answer clients who
    wait for each reply. On a shared host the worker yields the CPU to them (POSTWERK_WORKER_NICE, added to the
    process's niceness; 0 leaves it), which in the throughput benchmark, CPU-bound on two cores, is worth 5% of
    SMTP ingestion. On a host of its own it changes nothing."""
    from django.conf import settings

    if settings.POSTWERK_WORKER_NICE > 0:
        os.nice(settings.POSTWERK_WORKER_NICE)

"""Postwerk settings, read from the environment (see the table in README.md).

Embedded default: SQLite (WAL) and Celery's filesystem broker under POSTWERK_DATA_DIR, so a bare machine runs
the whole platform. Production: DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis or RabbitMQ).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Values for the embedded mode may come from a local .env file; the environment always wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("POSTWERK_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'postwerk.sqlite3'}")
# Embedded mode is SQLite: one machine, secrets generated into the data folder on first start.
EMBEDDED = DATABASE_URL.startswith("sqlite:")


def _secret(name: str, *, generate: bool) -> str:
    """A secret from NAME or NAME_FILE; generated once into the data folder only in embedded mode."""
    value = env.str(name, default="")
    file_name = env.str(f"{name}_FILE", default="")
    if file_name:
        try:
            value = Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name}: {exc}") from exc
    if value:
        return value
    if not generate:
        raise ImproperlyConfigured(
            f"{name} (or {name}_FILE) must be set with DATABASE_URL: secrets have no production default"
        )
    # Embedded mode: keep a generated secret beside the SQLite database so restarts keep sessions and keys.
    path = DATA_DIR / name.lower()
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret("SECRET_KEY", generate=EMBEDDED)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "accounts",
    "sending",
    "dashboard",
    "verification",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session typed a second-factor code (django-otp).
    "django_otp.middleware.OTPMiddleware",
    # Sends a person with two-factor to the code page, and one whose organization requires it to enrolment.
    "dashboard.two_factor_gate.TwoFactorMiddleware",
    # Who is acting, for the audit log (accounts.audit): the session's user and the client address.
    "accounts.audit.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if EMBEDDED:
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web, SMTP and worker processes read while one writes; IMMEDIATE takes the write
        # lock at BEGIN so concurrent writers wait on the busy timeout instead of failing mid-transaction.
        # synchronous=FULL: every commit reaches the disk before a 202 or 250 is sent (NORMAL would survive a
        # crash of the process, not of the machine).
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not :memory:, so a real Celery worker process in the tests sees the test database.
    _db_path = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(_db_path.with_name(f"test_{_db_path.name}"))}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if env.bool("POSTWERK_DB_CUSTOM_PLANS", default=True):
        # Foreign-key checks run at every commit as cached plans. Planned while a table was still small (a new
        # install, a fresh benchmark), they stay sequential scans for the connection's life and grow with the
        # table: half of PostgreSQL's time at 10,000 messages. Planned each time instead, they follow the table
        # (our own queries are sent with their values and planned each time anyway). Off for a pooler that
        # refuses startup options.
        _options = DATABASES["default"].setdefault("OPTIONS", {})
        _options["options"] = f"{_options.get('options', '')} -c plan_cache_mode=force_custom_plan".strip()
    # Lets two test runs share one PostgreSQL server without dropping each other's test database.
    if _test_db_name := env.str("POSTWERK_TEST_DB_NAME", default=""):
        DATABASES["default"]["TEST"] = {"NAME": _test_db_name}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Postwerk -------------------------------------------------------------------------------------------

POSTWERK_HOSTNAME = env.str("POSTWERK_HOSTNAME", default=socket.getfqdn() or "localhost")


def _dns_servers(raw: list[str]) -> list[tuple[str, int]]:
    servers = []
    for item in raw:
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host:
            host, port = item.strip(), "53"
        host = host.strip("[]")
        try:
            servers.append((host, int(port)))
        except ValueError as exc:
            raise ImproperlyConfigured(f"POSTWERK_DNS_SERVERS: bad entry {item!r} (want host:port)") from exc
    return servers


# Empty means the system resolver configuration (/etc/resolv.conf).
# The domain of envelope senders (bounce addresses). Its MX should point at Postwerk's inbound listener.
POSTWERK_RETURN_PATH_DOMAIN = env.str("POSTWERK_RETURN_PATH_DOMAIN", default=POSTWERK_HOSTNAME)
POSTWERK_DNS_SERVERS = _dns_servers(env.list("POSTWERK_DNS_SERVERS", default=[]))
POSTWERK_DNS_TIMEOUT = env.float("POSTWERK_DNS_TIMEOUT", default=5.0)
POSTWERK_SMTP_DELIVERY_PORT = env.int("POSTWERK_SMTP_DELIVERY_PORT", default=25)
POSTWERK_SMTP_CONNECT_TIMEOUT = env.float("POSTWERK_SMTP_CONNECT_TIMEOUT", default=30.0)
# RFC 5321 §4.5.3.2 suggests minutes per command; a shorter bound keeps a worker slot from idling on a tarpit.
POSTWERK_SMTP_COMMAND_TIMEOUT = env.float("POSTWERK_SMTP_COMMAND_TIMEOUT", default=120.0)

POSTWERK_MAX_MESSAGE_SIZE = env.int("POSTWERK_MAX_MESSAGE_SIZE", default=25 * 1024 * 1024)
POSTWERK_MAX_RECIPIENTS = env.int("POSTWERK_MAX_RECIPIENTS", default=50)
POSTWERK_BATCH_MAX_MESSAGES = env.int("POSTWERK_BATCH_MAX_MESSAGES", default=500)
# Templates (sending.templating.render): a render's time for the whole message, and its output per part.
POSTWERK_TEMPLATE_RENDER_TIMEOUT = env.float("POSTWERK_TEMPLATE_RENDER_TIMEOUT", default=1.0)
POSTWERK_TEMPLATE_MAX_OUTPUT = env.int("POSTWERK_TEMPLATE_MAX_OUTPUT", default=1_000_000)

# Seconds between delivery attempts after a temporary failure; the last step repeats until the age limit.
POSTWERK_RETRY_SCHEDULE = [
    int(s) for s in env.list("POSTWERK_RETRY_SCHEDULE", default=["60", "300", "900", "1800", "3600", "7200", "14400"])
]
POSTWERK_MAX_DELIVERY_AGE = env.int("POSTWERK_MAX_DELIVERY_AGE", default=2 * 24 * 3600)
# A delivering worker renews its lease (sending.delivery.worker_leases) every third of this; once it has run out
# the worker is taken for dead and the sweep queues its `sending` recipients again. Seconds.
POSTWERK_WORKER_LEASE = env.float("POSTWERK_WORKER_LEASE", default=60.0)
# A recipient left in `sending` this long by a claim that holds no worker lease (made by a version before leases)
# is queued again by the sweep.
POSTWERK_SENDING_TIMEOUT = env.int("POSTWERK_SENDING_TIMEOUT", default=600)
# How long an enqueued id may wait for a worker before the sweep assumes the broker lost it.
POSTWERK_ENQUEUE_LEASE = env.int("POSTWERK_ENQUEUE_LEASE", default=300)
POSTWERK_SWEEP_INTERVAL = env.float("POSTWERK_SWEEP_INTERVAL", default=30.0)
POSTWERK_MX_CACHE_MAX_TTL = env.int("POSTWERK_MX_CACHE_MAX_TTL", default=3600)
POSTWERK_DELIVERY_BATCH = env.int("POSTWERK_DELIVERY_BATCH", default=100)
# Recipients one delivery task may take to a destination it already has a connection to (its own batch plus
# queued ones of the same domain), so one-at-a-time submissions still share connections.
POSTWERK_DELIVERY_DRAIN = env.int("POSTWERK_DELIVERY_DRAIN", default=500)
# At most one pending delivery task per destination (sending.delivery.queueing): a marker in the cache while one is
# on its way, so mail submitted one message at a time does not become one task each (the task drains the destination's
# queue anyway). Its TTL bounds how long a marker whose task was lost holds publishing back (then the enqueue lease
# and the sweep take over, as after any lost task); 0 turns the dedupe off.
POSTWERK_DELIVERY_PENDING_TTL = env.int("POSTWERK_DELIVERY_PENDING_TTL", default=5)  # whole seconds (Redis)
# A destination whose delivery task started within the last second is busy: a task published for it with fewer
# than a batch of recipients waits this long before it runs, so a steady stream (SMTP submission, single API
# sends) reaches the worker as one batch per interval instead of a task, a claim and a commit per message. An
# idle destination's first message goes at once. Seconds; 0 turns it off.
POSTWERK_DELIVERY_COALESCE = env.float("POSTWERK_DELIVERY_COALESCE", default=1.0)
# Niceness a Celery worker adds to itself at start (config/celery.py): delivery yields the CPU to the front ends.
POSTWERK_WORKER_NICE = env.int("POSTWERK_WORKER_NICE", default=10)
# Part of the marker's key: tests give each test its own, so a marker left by one cannot hold back the next.
POSTWERK_DELIVERY_PENDING_NAMESPACE = env.str("POSTWERK_DELIVERY_PENDING_NAMESPACE", default="")
POSTWERK_IDEMPOTENCY_TTL = env.int("POSTWERK_IDEMPOTENCY_TTL", default=24 * 3600)
POSTWERK_DKIM_SELECTOR_PREFIX = env.str("POSTWERK_DKIM_SELECTOR_PREFIX", default="pw")

# --- Sender domains: what owners publish and how often it is checked -------------------------------------
# Each domain's return-path subdomain (`pm-bounces.DOMAIN` by default) is a CNAME to the platform host below.
POSTWERK_RETURN_PATH_PREFIX = env.str("POSTWERK_RETURN_PATH_PREFIX", default="pm-bounces")
# The inbound MX hosts a return-path subdomain may point its MX at when a CNAME is not possible.
POSTWERK_INBOUND_MX_HOSTS = env.list("POSTWERK_INBOUND_MX_HOSTS", default=[POSTWERK_RETURN_PATH_DOMAIN])
# SPF: the include owners add (a record the operator publishes), or the sending IPs as ip4:/ip6: terms.
POSTWERK_SPF_INCLUDE = env.str("POSTWERK_SPF_INCLUDE", default=f"_spf.{POSTWERK_RETURN_PATH_DOMAIN}")
# The addresses delivery connects from; SPF is evaluated for each of them.
POSTWERK_SENDING_IPS = env.list("POSTWERK_SENDING_IPS", default=[])
# Empty: each domain's reports go to dmarc-reports@ its own return-path host, which is in the domain's own
# organizational domain, so receivers need no `_report._dmarc` authorisation (RFC 7489 §7.1) and the inbound MX
# takes them. An address elsewhere needs `<domain>._report._dmarc.<its domain> TXT "v=DMARC1"` from the operator.
POSTWERK_DMARC_RUA = env.str("POSTWERK_DMARC_RUA", default="")
# Refuse mail from domains that have not proven ownership and published DKIM (off only for local trials).
POSTWERK_REQUIRE_VERIFIED_DOMAINS = env.bool("POSTWERK_REQUIRE_VERIFIED_DOMAINS", default=True)
POSTWERK_DOMAIN_CHECK_INTERVAL_UNVERIFIED = env.int("POSTWERK_DOMAIN_CHECK_INTERVAL_UNVERIFIED", default=3600)
POSTWERK_DOMAIN_CHECK_INTERVAL_VERIFIED = env.int("POSTWERK_DOMAIN_CHECK_INTERVAL_VERIFIED", default=24 * 3600)


def _fernet_key() -> bytes:
    raw = _secret("POSTWERK_ENCRYPTION_KEY", generate=EMBEDDED)
    try:
        key = base64.urlsafe_b64decode(raw.encode())
    except ValueError:
        key = b""
    if len(key) == 32:
        return raw.encode()
    # Any other string is stretched into a Fernet key, so a passphrase works too.
    return base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest())


POSTWERK_ENCRYPTION_KEY = _fernet_key()

# SMTP submission listeners: "host:port", or "off". Unprivileged ports when not root, so `make run` works.
_privileged = hasattr(os, "geteuid") and os.geteuid() == 0
_smtp_host = "127.0.0.1" if EMBEDDED else "0.0.0.0"  # noqa: S104 - production listens on every interface
POSTWERK_SMTP_SUBMISSION = env.str("POSTWERK_SMTP_SUBMISSION", default=f"{_smtp_host}:{587 if _privileged else 2587}")
POSTWERK_SMTP_SUBMISSIONS = env.str("POSTWERK_SMTP_SUBMISSIONS", default=f"{_smtp_host}:{465 if _privileged else 2465}")
# Certificate and key (PEM) for STARTTLS and implicit TLS. Embedded mode generates a self-signed pair.
POSTWERK_SMTP_TLS_CERT = env.str("POSTWERK_SMTP_TLS_CERT", default="")
POSTWERK_SMTP_TLS_KEY = env.str("POSTWERK_SMTP_TLS_KEY", default="")
POSTWERK_SMTP_IDLE_TIMEOUT = env.float("POSTWERK_SMTP_IDLE_TIMEOUT", default=300.0)
POSTWERK_SMTP_MAX_CONNECTIONS_PER_IP = env.int("POSTWERK_SMTP_MAX_CONNECTIONS_PER_IP", default=50)
POSTWERK_SMTP_AUTH_MAX_FAILURES = env.int("POSTWERK_SMTP_AUTH_MAX_FAILURES", default=10)
POSTWERK_SMTP_AUTH_FAILURE_WINDOW = env.int("POSTWERK_SMTP_AUTH_FAILURE_WINDOW", default=900)
# Most messages one SMTP server process stores in one transaction (its group commit; 1: one per message).
POSTWERK_SMTP_COMMIT_GROUP = env.int("POSTWERK_SMTP_COMMIT_GROUP", default=100)
# `manage.py smtpserver` processes sharing the listening ports (SO_REUSEPORT): one core each.
POSTWERK_SMTP_PROCESSES = env.int("POSTWERK_SMTP_PROCESSES", default=1)
# Networks that may submit without AUTH, each as the credential it stands for: "CIDR=username" (e.g. a Postfix
# smarthost or a load generator). Empty by default: every submission authenticates.
POSTWERK_SMTP_TRUSTED_NETWORKS = env.list("POSTWERK_SMTP_TRUSTED_NETWORKS", default=[])
# The inbound MX for bounces and feedback reports to return-path addresses: no AUTH, relays nothing.
POSTWERK_SMTP_INBOUND = env.str("POSTWERK_SMTP_INBOUND", default=f"{_smtp_host}:{25 if _privileged else 2525}")
POSTWERK_INBOUND_MAX_MESSAGE_SIZE = env.int("POSTWERK_INBOUND_MAX_MESSAGE_SIZE", default=30 * 1024 * 1024)
# Local parts accepted at return-path hosts besides VERP addresses: feedback loops and RFC 5321's postmaster.
POSTWERK_FEEDBACK_LOCAL_PARTS = env.list("POSTWERK_FEEDBACK_LOCAL_PARTS", default=["fbl", "abuse", "postmaster"])
# Inbound routes (sending.inbound): a post inlines attachments while their sizes add up to this many bytes (the
# rest are signed links), and its signed links to the raw message and attachments work for this many seconds.
POSTWERK_INBOUND_INLINE_ATTACHMENTS = env.int("POSTWERK_INBOUND_INLINE_ATTACHMENTS", default=512 * 1024)
POSTWERK_INBOUND_LINK_TTL = env.int("POSTWERK_INBOUND_LINK_TTL", default=7 * 24 * 3600)
# The inbound spam check (sending.inbound.spam): a SpamAssassin spamd at host:port; unset, mail is not checked (the
# post says so). A spamd that answers no sooner than the timeout (seconds) leaves the mail "not checked", never held.
POSTWERK_SPAMD_ADDRESS = env.str("POSTWERK_SPAMD_ADDRESS", default="")
POSTWERK_SPAMD_TIMEOUT = env.float("POSTWERK_SPAMD_TIMEOUT", default=10.0)
# Messages one client address may hand the inbound MX per window (seconds); past that MAIL is 450 4.7.1. 0: no limit.
POSTWERK_INBOUND_MESSAGES_PER_IP = env.int("POSTWERK_INBOUND_MESSAGES_PER_IP", default=1000)
POSTWERK_INBOUND_MESSAGES_WINDOW = env.int("POSTWERK_INBOUND_MESSAGES_WINDOW", default=3600)

# --- Bounces and suppressions -----------------------------------------------------------------------------
# Soft bounces (permanent non-address failures, expiries) suppress an address once this many fall in the window.
POSTWERK_SOFT_BOUNCE_LIMIT = env.int("POSTWERK_SOFT_BOUNCE_LIMIT", default=3)
POSTWERK_SOFT_BOUNCE_WINDOW = env.int("POSTWERK_SOFT_BOUNCE_WINDOW", default=7 * 24 * 3600)
# Seconds a suppression lasts, per reason; 0 = until removed.
POSTWERK_SUPPRESSION_TTL = {
    "hard_bounce": env.int("POSTWERK_SUPPRESSION_TTL_HARD_BOUNCE", default=0),
    "soft_bounce": env.int("POSTWERK_SUPPRESSION_TTL_SOFT_BOUNCE", default=30 * 24 * 3600),
    "complaint": env.int("POSTWERK_SUPPRESSION_TTL_COMPLAINT", default=0),
    "manual": env.int("POSTWERK_SUPPRESSION_TTL_MANUAL", default=0),
}

# --- Reputation, held mail, send limits, API rate limits (#7) ---------------------------------------------
# Rates over each scope's last POSTWERK_REPUTATION_WINDOW outcomes or POSTWERK_REPUTATION_WINDOW_DAYS, whichever is
# smaller, judged only from POSTWERK_REPUTATION_MIN_DELIVERIES on; thresholds default to Amazon SES's.
POSTWERK_REPUTATION_THRESHOLDS = {
    "bounce_warning": env.float("POSTWERK_REPUTATION_BOUNCE_WARNING", default=0.05),
    "bounce_pause": env.float("POSTWERK_REPUTATION_BOUNCE_PAUSE", default=0.10),
    "complaint_warning": env.float("POSTWERK_REPUTATION_COMPLAINT_WARNING", default=0.001),
    "complaint_pause": env.float("POSTWERK_REPUTATION_COMPLAINT_PAUSE", default=0.005),
}
POSTWERK_REPUTATION_WINDOW = env.int("POSTWERK_REPUTATION_WINDOW", default=10_000)
POSTWERK_REPUTATION_WINDOW_DAYS = env.int("POSTWERK_REPUTATION_WINDOW_DAYS", default=30)
POSTWERK_REPUTATION_MIN_DELIVERIES = env.int("POSTWERK_REPUTATION_MIN_DELIVERIES", default=500)
POSTWERK_REPUTATION_INTERVAL = env.float("POSTWERK_REPUTATION_INTERVAL", default=300.0)
# Seconds each process may act on a stale list of paused scopes (one query per interval, not per message).
POSTWERK_PAUSED_CACHE_SECONDS = env.float("POSTWERK_PAUSED_CACHE_SECONDS", default=5.0)
# Held mail older than this (seconds) is cancelled as `expired`.
POSTWERK_HELD_MAX_AGE = env.int("POSTWERK_HELD_MAX_AGE", default=7 * 24 * 3600)
# Messages per organization per UTC hour / day when the organization sets none; 0 = unlimited (costs nothing).
POSTWERK_SEND_LIMIT_HOURLY = env.int("POSTWERK_SEND_LIMIT_HOURLY", default=0)
POSTWERK_SEND_LIMIT_DAILY = env.int("POSTWERK_SEND_LIMIT_DAILY", default=0)
# New mail while paused or over a limit: "hold" (accept and hold) or "reject" (API 429, SMTP 451 4.7.1).
POSTWERK_LIMIT_ACTION = env.str("POSTWERK_LIMIT_ACTION", default="hold")
if POSTWERK_LIMIT_ACTION not in ("hold", "reject"):
    raise ImproperlyConfigured("POSTWERK_LIMIT_ACTION: hold or reject")
# API requests per second per key when the key sets none; 0 = unlimited. A guard against a runaway client, not a
# send limit (those are POSTWERK_SEND_LIMIT_*): an application sending one message per request sends at most this
# many messages a second with one key, so the default is above what one Postwerk host accepts that way (100 capped
# single-message sending at a fifth of the platform's speed, silently for the sender, issue #21).
POSTWERK_API_RATE_LIMIT = env.int("POSTWERK_API_RATE_LIMIT", default=1000)

# --- Celery ---------------------------------------------------------------------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = DATA_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_queue_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
        # Otherwise kombu writes its control exchange into the current directory of each process.
        "control_folder": str(_queue_dir / "control"),
        # The filesystem transport polls; a short interval keeps delivery and shutdown snappy.
        "polling_interval": 0.2,
    }
CELERY_TASK_IGNORE_RESULT = True

# Shared counters (SMTP AUTH failure limits). Every process on every host must see the same cache, so Redis
# in production: CACHE_URL, or the Redis broker when that is what CELERY_BROKER_URL names.
_cache_url = env.str("CACHE_URL", default="")
if not _cache_url and CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    _cache_url = CELERY_BROKER_URL
if _cache_url.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "postwerk",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Acknowledge after the task ran, so a worker that dies mid-task leaves the message on the broker; the
# database claim makes the second run harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=4)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup otherwise closes the database connection around every task: a new session per task
# (measured at ~11 ms each in bench/send_api.py).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sweep-recipients": {"task": "sending.tasks.sweep", "schedule": POSTWERK_SWEEP_INTERVAL},
    "expire-idempotency-keys": {"task": "sending.tasks.expire_idempotency_keys", "schedule": 3600.0},
    # Finds the domains whose next DNS check is due (hourly unverified, daily verified) and queues each.
    "check-domains": {"task": "sending.tasks.check_due_domains", "schedule": 300.0},
    "expire-suppressions": {"task": "sending.tasks.expire_suppressions", "schedule": 3600.0},
    "reputation-recompute": {"task": "sending.tasks.reputation_recompute", "schedule": POSTWERK_REPUTATION_INTERVAL},
    # Releases send-limit holds once their window has reopened, and expires held mail past POSTWERK_HELD_MAX_AGE.
    "held-mail": {"task": "sending.tasks.held_maintenance", "schedule": 60.0},
}
CELERY_TASK_ROUTES = {
    "sending.tasks.deliver": {"queue": "delivery"},
    "sending.tasks.process_inbound": {"queue": "default"},
}
CELERY_TASK_DEFAULT_QUEUE = "default"

# --- API ------------------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["sending.api.permissions.ScopeRequired"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["sending.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "sending.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Per API key, requests per second (ApiKey.rate_limit or POSTWERK_API_RATE_LIMIT): 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["sending.api.throttling.ApiKeyRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Postwerk API",
    "DESCRIPTION": "Send transactional email and follow every recipient's delivery.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# The send API checks the size itself (413); Django's own cap would answer 400 before the view runs.
DATA_UPLOAD_MAX_MEMORY_SIZE = None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # parsedmarc logs a line per report it reads at INFO; the inbound message's note already says it.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "parsedmarc": {"level": "WARNING"}},
}

# --- Webhooks and tracking --------------------------------------------------------------------------------
import ipaddress  # noqa: E402 - kept with the settings that use it

# Webhook URLs must be https unless the operator allows http; loopback, private, link-local and other
# non-public addresses are refused (every address the host resolves to) unless allowed, e.g. for tests.
POSTWERK_WEBHOOK_ALLOW_HTTP = env.bool("POSTWERK_WEBHOOK_ALLOW_HTTP", default=False)
POSTWERK_WEBHOOK_ALLOW_PRIVATE = env.bool("POSTWERK_WEBHOOK_ALLOW_PRIVATE", default=False)
POSTWERK_WEBHOOK_TIMEOUT = env.float("POSTWERK_WEBHOOK_TIMEOUT", default=10.0)
POSTWERK_WEBHOOK_MAX_RESPONSE_BYTES = env.int("POSTWERK_WEBHOOK_MAX_RESPONSE_BYTES", default=64 * 1024)
# Seconds between attempts after a timeout, connection error or non-2xx; after the last step it has failed.
POSTWERK_WEBHOOK_RETRY_SCHEDULE = [
    int(s)
    for s in env.list(
        "POSTWERK_WEBHOOK_RETRY_SCHEDULE", default=["60", "300", "900", "3600", "14400", "43200", "86400"]
    )
]
# An endpoint that has failed for this long with no success in between is disabled (an event says so).
POSTWERK_WEBHOOK_DISABLE_AFTER = env.int("POSTWERK_WEBHOOK_DISABLE_AFTER", default=3 * 24 * 3600)
POSTWERK_WEBHOOK_SECRET_OVERLAP = env.int("POSTWERK_WEBHOOK_SECRET_OVERLAP", default=24 * 3600)
POSTWERK_WEBHOOK_SWEEP_INTERVAL = env.float("POSTWERK_WEBHOOK_SWEEP_INTERVAL", default=5.0)
POSTWERK_WEBHOOK_BATCH = env.int("POSTWERK_WEBHOOK_BATCH", default=20)
# Open pixels, click redirects and unsubscribe links live on each domain's tracking subdomain
# (`track.DOMAIN`, a CNAME to POSTWERK_TRACKING_HOST), or on POSTWERK_TRACKING_HOST until that CNAME is seen.
POSTWERK_TRACKING_HOST = env.str("POSTWERK_TRACKING_HOST", default=POSTWERK_HOSTNAME)
POSTWERK_TRACKING_PREFIX = env.str("POSTWERK_TRACKING_PREFIX", default="track")
POSTWERK_TRACKING_SCHEME = env.str("POSTWERK_TRACKING_SCHEME", default="https")
if POSTWERK_TRACKING_SCHEME not in ("http", "https"):
    raise ImproperlyConfigured("POSTWERK_TRACKING_SCHEME: http or https")
# Image fetches by privacy proxies (not a person reading): flagged `machine`, never counted as human opens.
POSTWERK_TRACKING_MACHINE_USER_AGENTS = env.list(
    "POSTWERK_TRACKING_MACHINE_USER_AGENTS",
    default=["GoogleImageProxy", "YahooMailProxy", "ggpht.com", "Barracuda", "Mimecast", "Proofpoint"],
)
# Apple Mail Privacy Protection prefetches from Apple's 17.0.0.0/8.
POSTWERK_TRACKING_MACHINE_NETWORKS = env.list("POSTWERK_TRACKING_MACHINE_NETWORKS", default=["17.0.0.0/8"])
try:
    POSTWERK_TRACKING_MACHINE_NETWORKS = [
        ipaddress.ip_network(n.strip(), strict=False) for n in POSTWERK_TRACKING_MACHINE_NETWORKS if n.strip()
    ]
except ValueError as _exc:
    raise ImproperlyConfigured(f"POSTWERK_TRACKING_MACHINE_NETWORKS: {_exc}") from _exc
# Behind a reverse proxy, the client address of opens and clicks comes from X-Forwarded-For.
POSTWERK_TRACKING_TRUST_X_FORWARDED_FOR = env.bool("POSTWERK_TRACKING_TRUST_X_FORWARDED_FOR", default=False)
POSTWERK_SUPPRESSION_TTL["unsubscribe"] = env.int("POSTWERK_SUPPRESSION_TTL_UNSUBSCRIBE", default=0)
# Webhook work has its own queue, so a slow receiver never holds up delivery.
CELERY_IMPORTS = ["sending.webhooks.tasks"]
CELERY_TASK_ROUTES["sending.webhooks.*"] = {"queue": "webhooks"}
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {"task": "sending.webhooks.sweep", "schedule": POSTWERK_WEBHOOK_SWEEP_INTERVAL}
# Event types appear in several request and response fields: one name for them in the OpenAPI schema.
# Every operation's error answers, in one place (sending/api/schema.py).
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "sending.api.schema.error_responses",
]
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    "EventTypeEnum": "sending.models.EventType",
    "WebhookDeliveryStateEnum": "sending.models.WebhookDelivery.State",
    "ReputationStateEnum": "sending.models.ReputationState",
    "TemplateKindEnum": "sending.models.TemplateKind",
}

# --- Dashboard --------------------------------------------------------------------------------------------

LOGIN_URL = "dashboard:login"
# The issuer authenticator apps show next to the account name.
OTP_TOTP_ISSUER = env.str("POSTWERK_TOTP_ISSUER", default="Postwerk")

# --- Optional OpenID Connect single sign-on (mozilla-django-oidc), off unless POSTWERK_OIDC_CLIENT_ID is set ---
OIDC_RP_CLIENT_ID = env.str("POSTWERK_OIDC_CLIENT_ID", default="")
POSTWERK_OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_RP_CLIENT_SECRET = env.str("POSTWERK_OIDC_CLIENT_SECRET", default="")
if env.str("POSTWERK_OIDC_CLIENT_SECRET_FILE", default=""):
    OIDC_RP_CLIENT_SECRET = Path(env.str("POSTWERK_OIDC_CLIENT_SECRET_FILE")).read_text().strip()
_OIDC_ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "POSTWERK_OIDC_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT": "POSTWERK_OIDC_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT": "POSTWERK_OIDC_USERINFO_ENDPOINT",
    "OIDC_OP_JWKS_ENDPOINT": "POSTWERK_OIDC_JWKS_ENDPOINT",
}
for _setting, _variable in _OIDC_ENDPOINTS.items():
    globals()[_setting] = env.str(_variable, default="")
    if POSTWERK_OIDC_ENABLED and not globals()[_setting]:
        raise ImproperlyConfigured(f"{_variable} must be set when POSTWERK_OIDC_CLIENT_ID is (single sign-on)")
if POSTWERK_OIDC_ENABLED and not OIDC_RP_CLIENT_SECRET:
    raise ImproperlyConfigured("POSTWERK_OIDC_CLIENT_SECRET (or _FILE) must be set when POSTWERK_OIDC_CLIENT_ID is")
OIDC_RP_SIGN_ALGO = env.str("POSTWERK_OIDC_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("POSTWERK_OIDC_SCOPES", default="openid email profile")
OIDC_CREATE_USER = env.bool("POSTWERK_OIDC_CREATE_USERS", default=False)
OIDC_USE_NONCE = True
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"
# The OIDC backend answers only when single sign-on is configured; passwords keep working either way.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend", "accounts.oidc.OidcBackend"]
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "dashboard:login"
CSRF_FAILURE_VIEW = "dashboard.views.auth.csrf_failure"
# No script reads the CSRF cookie (forms carry the token), so it need not be readable from JavaScript.
CSRF_COOKIE_HTTPONLY = True
# Behind TLS (production), cookies must never travel over plain HTTP: on by default outside the embedded
# development mode (and DEBUG); POSTWERK_SECURE_COOKIES=false for a plain-HTTP trial on PostgreSQL.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("POSTWERK_SECURE_COOKIES", default=not (EMBEDDED or DEBUG))
# Log-in brute force: failures counted in the shared cache per username and per client address; at the limit
# the login answers 429 until the window has passed. An address gets more room (an office shares one).
POSTWERK_LOGIN_MAX_FAILURES = env.int("POSTWERK_LOGIN_MAX_FAILURES", default=5)
POSTWERK_LOGIN_MAX_FAILURES_PER_IP = env.int("POSTWERK_LOGIN_MAX_FAILURES_PER_IP", default=30)
POSTWERK_LOGIN_FAILURE_WINDOW = env.int("POSTWERK_LOGIN_FAILURE_WINDOW", default=900)
# Behind a reverse proxy every client has the proxy's address: take the client's from X-Forwarded-For.
POSTWERK_LOGIN_TRUST_X_FORWARDED_FOR = env.bool("POSTWERK_LOGIN_TRUST_X_FORWARDED_FOR", default=False)
# Invitation emails. EMAIL_URL: smtp://user:pass@host:25, smtp+tls://…:587, smtps://…:465; the default prints
# them to the web process's log (the inviter also sees the link once on the Members page).
_email_url = env.str("EMAIL_URL", default="")
if env.str("EMAIL_URL_FILE", default=""):
    try:
        _email_url = Path(env.str("EMAIL_URL_FILE")).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"EMAIL_URL_FILE: cannot read it: {exc}") from exc
try:
    _email = env.email_url_config(_email_url or "consolemail://")
except (KeyError, ValueError) as exc:
    raise ImproperlyConfigured(f"EMAIL_URL: not a mail URL ({exc})") from exc
vars().update({key: value for key, value in _email.items() if value not in (None, "")})
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=f"Postwerk <postwerk@{POSTWERK_HOSTNAME}>")

# --- Address verification ---------------------------------------------------------------------------------
# MAIL FROM of the probe; empty means verify@POSTWERK_RETURN_PATH_DOMAIN (whose SPF already names our IPs).
POSTWERK_VERIFY_MAIL_FROM = env.str("POSTWERK_VERIFY_MAIL_FROM", default="")
POSTWERK_VERIFY_MAX_ADDRESSES = env.int("POSTWERK_VERIFY_MAX_ADDRESSES", default=1000)
# Addresses per organization per rolling hour (0: no limit). Each probe spends the platform's IP reputation.
POSTWERK_VERIFY_HOURLY_LIMIT = env.int("POSTWERK_VERIFY_HOURLY_LIMIT", default=10000)
# Concurrent probe connections per MX host, across every process (the database coordinates them).
POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX = env.int("POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX", default=2)
POSTWERK_VERIFY_ADDRESSES_PER_CONNECTION = env.int("POSTWERK_VERIFY_ADDRESSES_PER_CONNECTION", default=20)
POSTWERK_VERIFY_CONNECT_TIMEOUT = env.float("POSTWERK_VERIFY_CONNECT_TIMEOUT", default=15.0)
POSTWERK_VERIFY_COMMAND_TIMEOUT = env.float("POSTWERK_VERIFY_COMMAND_TIMEOUT", default=30.0)
# How long a job waits for a free connection to a busy MX before answering `unknown` (`mx_busy`).
POSTWERK_VERIFY_SLOT_WAIT = env.float("POSTWERK_VERIFY_SLOT_WAIT", default=60.0)
# A connection slot not renewed for this long belonged to a process that died.
POSTWERK_VERIFY_SLOT_LEASE = env.int("POSTWERK_VERIFY_SLOT_LEASE", default=300)
POSTWERK_VERIFY_ADDRESS_CACHE_TTL = env.int("POSTWERK_VERIFY_ADDRESS_CACHE_TTL", default=24 * 3600)
POSTWERK_VERIFY_DOMAIN_CACHE_TTL = env.int("POSTWERK_VERIFY_DOMAIN_CACHE_TTL", default=24 * 3600)
POSTWERK_VERIFY_JOB_THREADS = env.int("POSTWERK_VERIFY_JOB_THREADS", default=8)
# A running job whose worker has not reported for this long is taken over by another.
POSTWERK_VERIFY_JOB_LEASE = env.int("POSTWERK_VERIFY_JOB_LEASE", default=600)
POSTWERK_VERIFY_RESULT_RETENTION = env.int("POSTWERK_VERIFY_RESULT_RETENTION", default=30 * 24 * 3600)
CELERY_TASK_ROUTES["verification.tasks.run_job"] = {"queue": "verification"}
CELERY_TASK_ROUTES["verification.tasks.sweep"] = {"queue": "verification"}
CELERY_BEAT_SCHEDULE["verification-sweep"] = {"task": "verification.tasks.sweep", "schedule": 60.0}


# --- Per-destination throttling and blocklists (sending/delivery/throttling.py, sending/reputation/blocklists.py) ---
# Built-in traffic shaping for the big mailbox providers; a ThrottleRule row (admin) with the same pattern
# replaces one, a disabled row switches it off. `match`: domain (the recipient domain, `*.x` for subdomains) or
# mx (an MX host suffix). Limits: null means unlimited. JSON list in the environment to replace them all.
def _throttle(patterns: tuple[str, ...], match: str, connections: int, per_connection: int, per_minute: int) -> list:
    limits = {"max_connections": connections, "max_messages_per_connection": per_connection}
    return [{"pattern": p, "match": match, **limits, "max_messages_per_minute": per_minute} for p in patterns]


POSTWERK_THROTTLE_RULES = env.json(
    "POSTWERK_THROTTLE_RULES",
    default=_throttle(("gmail.com", "googlemail.com"), "domain", 10, 100, 600)
    + _throttle(("*.google.com",), "mx", 10, 100, 600)
    + _throttle(("outlook.com", "hotmail.com", "live.com", "msn.com"), "domain", 5, 100, 300)
    + _throttle(("*.outlook.com",), "mx", 5, 100, 300)
    + _throttle(("yahoo.com", "ymail.com", "aol.com"), "domain", 5, 20, 300)
    + _throttle(("*.yahoodns.net",), "mx", 5, 20, 300),
)
# Length in seconds of the "per minute" window. Exists so tests can shrink a minute; leave it at 60.
POSTWERK_THROTTLE_WINDOW = env.float("POSTWERK_THROTTLE_WINDOW", default=60.0)
# A destination that answers 421 or 4.7.x "slow down" is left alone this long, doubling on repeats up to the max.
POSTWERK_THROTTLE_BACKOFF = env.float("POSTWERK_THROTTLE_BACKOFF", default=300.0)
POSTWERK_THROTTLE_BACKOFF_MAX = env.float("POSTWERK_THROTTLE_BACKOFF_MAX", default=3600.0)
# Seconds a process trusts its copy of the rules and of the destinations currently backed off.
POSTWERK_THROTTLE_CACHE_SECONDS = env.float("POSTWERK_THROTTLE_CACHE_SECONDS", default=5.0)
# A connection slot not renewed for this long belonged to a process that died.
POSTWERK_THROTTLE_SLOT_LEASE = env.float("POSTWERK_THROTTLE_SLOT_LEASE", default=300.0)
# When every connection slot of a destination is taken, its mail is tried again after this many seconds (the
# holders take it along meanwhile).
POSTWERK_THROTTLE_SLOT_RETRY = env.float("POSTWERK_THROTTLE_SLOT_RETRY", default=5.0)
# --- Egress: sending IPs, pools, warm-up, provider shaping (#26) ----------------------------------------------
# The receiving providers' data (MX suffixes, per-IP limits, reply rules): an operator's copy of mail/providers.toml
# replaces the shipped file as a whole. Empty: the shipped one.
POSTWERK_PROVIDERS_FILE = env.str("POSTWERK_PROVIDERS_FILE", default="")
# Messages per receiving provider a new IP may send on day 1, 2, ... of its warm-up; past the last day it is warm.
# Roughly doubling for two weeks, then up to the volumes large providers take from an IP with a good reputation.
POSTWERK_WARMUP_SCHEDULE = [
    int(v)
    for v in env.list(
        "POSTWERK_WARMUP_SCHEDULE",
        default=[50, 100, 200, 400, 700, 1000, 1500, 2000, 3000, 4500, 6500, 9000, 13000, 18000, 25000, 35000, 50000],
    )
]
if any(v <= 0 for v in POSTWERK_WARMUP_SCHEDULE):
    raise ImproperlyConfigured("POSTWERK_WARMUP_SCHEDULE: positive integers, one per day")
POSTWERK_DNSBL_ZONES = env.list(
    "POSTWERK_DNSBL_ZONES", default=["zen.spamhaus.org", "b.barracudacentral.org", "bl.spamcop.net"]
)
POSTWERK_DOMAIN_BLOCKLIST_ZONES = env.list(
    "POSTWERK_DOMAIN_BLOCKLIST_ZONES", default=["dbl.spamhaus.org", "multi.surbl.org"]
)
POSTWERK_BLOCKLIST_CHECK_INTERVAL = env.float("POSTWERK_BLOCKLIST_CHECK_INTERVAL", default=3600.0)
CELERY_BEAT_SCHEDULE["check-blocklists"] = {
    "task": "sending.tasks.check_blocklists",
    "schedule": POSTWERK_BLOCKLIST_CHECK_INTERVAL,
}

# --- Operations: metrics, structured logs, retention, overload (#11) --------------------------------------
# /metrics answers only to `Authorization: Bearer <token>` (or a staff session); with no token set it is 404.
POSTWERK_METRICS_TOKEN = env.str("POSTWERK_METRICS_TOKEN", default="")
if env.str("POSTWERK_METRICS_TOKEN_FILE", default=""):
    POSTWERK_METRICS_TOKEN = Path(env.str("POSTWERK_METRICS_TOKEN_FILE")).read_text().strip()
# Seconds the database-derived figures (queue depth, per-minute counts) are cached per process.
POSTWERK_METRICS_CACHE_SECONDS = env.float("POSTWERK_METRICS_CACHE_SECONDS", default=5.0)
# Per-process figures (SMTP sessions, delivery latency) of every process on a host are summed through files in
# this folder (prometheus_client's multiprocess mode); it must be set before prometheus_client is imported.
POSTWERK_METRICS_DIR = env.str("POSTWERK_METRICS_DIR", default=str(DATA_DIR / "metrics"))
Path(POSTWERK_METRICS_DIR).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", POSTWERK_METRICS_DIR)
# `json`: one JSON object per log line (message and recipient ids as fields); `text` for a terminal.
POSTWERK_LOG_FORMAT = env.str("POSTWERK_LOG_FORMAT", default="text" if EMBEDDED else "json")
if POSTWERK_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("POSTWERK_LOG_FORMAT: text or json")
LOGGING["formatters"]["json"] = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
    "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
}
if POSTWERK_LOG_FORMAT == "json":
    LOGGING["handlers"]["console"]["formatter"] = "json"
# Retention: bodies of finished messages are blanked after RAW_DAYS; messages, their recipients and events are
# deleted after DAYS (suppressions are kept). Deleted in batches of RETENTION_BATCH ids, one short transaction each.
POSTWERK_RETENTION_RAW_DAYS = env.int("POSTWERK_RETENTION_RAW_DAYS", default=30)
POSTWERK_RETENTION_DAYS = env.int("POSTWERK_RETENTION_DAYS", default=90)
POSTWERK_RETENTION_BATCH = env.int("POSTWERK_RETENTION_BATCH", default=500)
if POSTWERK_RETENTION_DAYS < POSTWERK_RETENTION_RAW_DAYS:
    raise ImproperlyConfigured("POSTWERK_RETENTION_DAYS must be at least POSTWERK_RETENTION_RAW_DAYS")
CELERY_BEAT_SCHEDULE["retention-purge"] = {"task": "sending.tasks.retention_purge", "schedule": 3600.0}
# Overload: with more recipients than this waiting for a worker (queued or sending), new mail is refused with a
# temporary answer (API 503 + Retry-After, SMTP 451 4.3.2) until the workers catch up. 0 turns the check off.
POSTWERK_OVERLOAD_QUEUE_DEPTH = env.int("POSTWERK_OVERLOAD_QUEUE_DEPTH", default=20000)
POSTWERK_OVERLOAD_RETRY_AFTER = env.int("POSTWERK_OVERLOAD_RETRY_AFTER", default=30)
MIDDLEWARE.insert(1, "sending.reputation.overload.OverloadMiddleware")

# --- Transport security: MTA-STS, DANE, TLS reports (#26; mail/tls_policy, sending/delivery/tls_policies.py) ---
# A PEM file of CAs trusted besides the system's, for MTA-STS policy fetches, TLS report uploads and recipient MX
# certificates (a private PKI, or tests). Empty: the system's CAs only.
POSTWERK_EXTRA_CA_FILE = env.str("POSTWERK_EXTRA_CA_FILE", default="")
if POSTWERK_EXTRA_CA_FILE and not Path(POSTWERK_EXTRA_CA_FILE).is_file():
    raise ImproperlyConfigured(f"POSTWERK_EXTRA_CA_FILE: {POSTWERK_EXTRA_CA_FILE} is not a readable file")
POSTWERK_MTA_STS = env.bool("POSTWERK_MTA_STS", default=True)
# The HTTPS port of mta-sts.<domain> (RFC 8461 says 443; exists so tests can use a free port).
POSTWERK_MTA_STS_PORT = env.int("POSTWERK_MTA_STS_PORT", default=443)
POSTWERK_MTA_STS_TIMEOUT = env.float("POSTWERK_MTA_STS_TIMEOUT", default=10.0)
# After a failed policy fetch, no process fetches that domain's policy again for this long.
POSTWERK_MTA_STS_RETRY = env.int("POSTWERK_MTA_STS_RETRY", default=300)
# A domain publishes _mta-sts but its policy has never been fetched: mail waits (deferred, the fetch retried) this
# long after the first failure before going as RFC 8461 §3.3 says, as if no policy were published. 0: at once.
POSTWERK_MTA_STS_FETCH_GRACE = env.int("POSTWERK_MTA_STS_FETCH_GRACE", default=3600)
POSTWERK_DANE = env.bool("POSTWERK_DANE", default=True)
# DNSSEC trust anchors, DS or DNSKEY records in presentation format (`<zone> DS <tag> <alg> <type> <hex>`);
# default: the root zone's KSK-2017 and KSK-2024. Answers are validated locally against them (RFC 4035 §5).
POSTWERK_DNSSEC_TRUST_ANCHORS = env.list(
    "POSTWERK_DNSSEC_TRUST_ANCHORS",
    default=[
        ". DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
        ". DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
    ],
)
# Seconds a process trusts its copy of a destination's policies (MTA-STS row, DANE lookups) before asking again.
POSTWERK_TLS_POLICY_CACHE_SECONDS = env.float("POSTWERK_TLS_POLICY_CACHE_SECONDS", default=60.0)
# TLS-RPT (RFC 8460): daily aggregate reports to the domains that publish `_smtp._tls`. Reports by mail are
# sent From this address, whose domain must be a verified sender domain (they are DKIM-signed like any mail);
# empty: only https endpoints get reports.
POSTWERK_TLSRPT = env.bool("POSTWERK_TLSRPT", default=True)
POSTWERK_TLSRPT_FROM = env.str("POSTWERK_TLSRPT_FROM", default="")
# The report's organization-name and contact-info; empty: POSTWERK_HOSTNAME and postmaster@ it.
POSTWERK_TLSRPT_ORGANIZATION = env.str("POSTWERK_TLSRPT_ORGANIZATION", default="")
POSTWERK_TLSRPT_CONTACT = env.str("POSTWERK_TLSRPT_CONTACT", default="")
POSTWERK_TLSRPT_TIMEOUT = env.float("POSTWERK_TLSRPT_TIMEOUT", default=30.0)
CELERY_BEAT_SCHEDULE["tls-reports"] = {"task": "sending.tasks.tls_reports_send", "schedule": 3600.0}

# First run: `manage.py provision --owner EMAIL` prints a one-time sign-in link under this address, valid this
# many seconds (used once; only its hash is stored).
POSTWERK_DASHBOARD_URL = env.str(
    "POSTWERK_DASHBOARD_URL", default=f"http://127.0.0.1:{env.str('POSTWERK_HTTP_PORT', default='8000')}"
).rstrip("/")
POSTWERK_SIGN_IN_LINK_TTL = env.int("POSTWERK_SIGN_IN_LINK_TTL", default=3600)

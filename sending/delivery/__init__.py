"""Getting mail out: Celery hand-off, claims, the sweep, per-destination throttling, retries, signing keys, the SMTP
delivery stage."""

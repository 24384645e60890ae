"""Celery tasks for address verification, on the `verification` queue: thin wrappers carrying ids."""

from __future__ import annotations

from celery import shared_task

from verification import services


@shared_task(name=services.RUN_JOB_TASK)
def run_job(job_id: str) -> int:
    return services.verification_job_run(job_id)


@shared_task(name="verification.tasks.sweep")
def sweep() -> dict[str, int]:
    return services.verification_sweep()

"""Celery tasks of the `webhooks` queue (routed in settings): ids in, one service call each."""

from __future__ import annotations

from celery import shared_task

from sending.webhooks import dispatch, fanout


@shared_task(name="sending.webhooks.sweep")
def sweep() -> dict[str, int]:
    """Fan new events out to endpoints, then queue every due delivery (new, retries, and lost tasks)."""
    created = fanout.webhook_fanout()
    due = dispatch.deliveries_due()
    published = dispatch.enqueue(due) if due else 0
    return {"created": created, "due": len(due), "tasks": published}


@shared_task(name=dispatch.DELIVER_TASK)
def deliver(delivery_ids: list[str]) -> int:
    return dispatch.deliveries_send(delivery_ids)

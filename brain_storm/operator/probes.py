"""Can the operator reach each binding's database and queue?

One loop for the whole operator, started by the startup handler, rather than
a kopf timer per binding: kopf puts a finalizer on every object a timer or a
daemon serves, and a finalizer left behind by a stopped operator would keep
bindings, and their namespaces, from ever being deleted.

The check is a TCP connect to the URL's first host and port, from the
operator's pod; it says whether the network path is open, not whether the
credentials work.  A reachable endpoint is checked again every
``interval_s``; an unreachable one sooner, backing off from ``retry_s`` up to
``interval_s``.  Status is written only when a condition changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from brain_storm.operator import manifests
from brain_storm.operator.kube import Kube
from brain_storm.operator.reconcile import Cache, Entry, Key, key_of, write_status

log = logging.getLogger(__name__)

CONDITIONS = {"database": "DatabaseReachable", "queue": "QueueReachable"}


@dataclass
class Schedule:
    """When each (binding, endpoint) is due, and how many checks failed in a row."""

    due: dict[tuple[Key, str], float] = field(default_factory=dict)
    failures: dict[tuple[Key, str], int] = field(default_factory=dict)

    def forget_all_but(self, keys: set[Key]) -> None:
        """Drop the bindings that were deleted meanwhile."""
        for slot in [slot for slot in self.due if slot[0] not in keys]:
            self.due.pop(slot, None)
            self.failures.pop(slot, None)


@dataclass(frozen=True, kw_only=True)
class ProbeSettings:
    interval_s: float = 60.0
    retry_s: float = 5.0
    timeout_s: float = 3.0
    tick_s: float = 1.0
    concurrency: int = 32


async def probe_forever(cache: Cache, kube: Kube, settings: ProbeSettings) -> None:
    """Check every due endpoint each tick, until cancelled."""
    schedule = Schedule()
    limit = asyncio.Semaphore(settings.concurrency)
    while True:
        now = time.monotonic()
        with cache.lock:
            entries = list(cache.entries.values())
        schedule.forget_all_but({key_of(entry.body) for entry in entries})
        checks = [
            _probe(entry, endpoint, kube, settings, schedule, limit)
            for entry in entries if entry.targets
            for endpoint in CONDITIONS
            if schedule.due.get((key_of(entry.body), endpoint), 0.0) <= now
        ]
        if checks:
            await asyncio.gather(*checks)
        await asyncio.sleep(settings.tick_s)


async def _probe(
    entry: Entry,
    endpoint: str,
    kube: Kube,
    settings: ProbeSettings,
    schedule: Schedule,
    limit: asyncio.Semaphore,
) -> None:
    slot = (key_of(entry.body), endpoint)
    target = entry.targets.get(endpoint)
    async with limit:
        status, reason, message = await check(target, timeout_s=settings.timeout_s)

    # Back off while an endpoint stays down; check a healthy one now and then.
    failures = 0 if status is not False else schedule.failures.get(slot, 0) + 1
    schedule.failures[slot] = failures
    delay = (settings.interval_s if not failures
             else min(settings.retry_s * 2 ** (failures - 1), settings.interval_s))
    schedule.due[slot] = time.monotonic() + delay

    generation = entry.body["metadata"].get("generation", 0)
    update = manifests.condition(CONDITIONS[endpoint], status, reason, message,
                                 generation=generation)
    try:
        await asyncio.to_thread(write_status, entry, {}, [update], kube=kube)
    except Exception as error:  # the next round tries again
        log.warning("cannot write %s of %s/%s: %s", update["type"], *slot[0], error)


async def check(
    target: tuple[str, int] | str | None, *, timeout_s: float
) -> tuple[bool | None, str, str]:
    """(status, reason, message) of a TCP connect to ``target``."""
    if not isinstance(target, tuple):
        return None, "NotProbed", target or "not resolved yet"
    host, port = target
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), timeout=timeout_s)
    except (OSError, TimeoutError) as error:
        detail = type(error).__name__ if not str(error) else str(error)
        return False, "ConnectFailed", f"TCP connect to {host}:{port} failed: {detail}"
    writer.close()
    await _closed(writer)
    return True, "Connected", f"TCP connect to {host}:{port} succeeded"


async def _closed(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.wait_closed()
    except OSError:
        pass

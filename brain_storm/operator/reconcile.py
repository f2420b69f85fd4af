"""Bring one binding's Deployment and status to what its spec asks for.

The handlers (handlers.py) decide when; this module does the work, with the
API calls of kube.py and the pure builders of manifests.py and endpoints.py.
It also holds the operator's memory of the bindings it has seen
(:class:`Cache`): the last body from the watch, the manifest last applied and
the probe targets, so that Deployment and Secret events and the reachability
loop need no API reads, and an idle binding costs no requests at all.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from brain_storm.operator import manifests
from brain_storm.operator.endpoints import ConfigProblem, Resolved, resolve
from brain_storm.operator.kube import Kube
from brain_storm.urls import url_scheme

Key = tuple[str, str]
"""(namespace, name) of a binding."""

KEDA_QUEUE_SCHEMES = ("amqp", "amqps")

RETRY_CONFIG_S = 300
"""How long kopf waits before retrying a binding with a configuration problem;
a change to the binding or to its Secret retries at once instead."""


@dataclass
class Entry:
    """What the operator remembers of one binding."""

    body: dict[str, Any]
    applied: dict[str, Any] | None = None
    """The Deployment spec last applied, as the server normalised it."""
    targets: dict[str, tuple[str, int] | str] = field(default_factory=dict)
    attempted_generation: int | None = None
    """The generation last reconciled, successfully or not."""
    kopf_retry_pending: bool = False
    """kopf's own handler failed temporarily and waits out its long delay:
    meanwhile a new generation is reconciled without it."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Cache:
    """The bindings this operator watches, kept current by the watch events."""

    entries: dict[Key, Entry] = field(default_factory=dict)
    default_image: str = manifests.DEFAULT_IMAGE
    lock: threading.Lock = field(default_factory=threading.Lock)

    def remember(self, body: Mapping[str, Any]) -> Entry:
        """Record the latest body seen; a new uid (same name) starts afresh."""
        body = plain(body)
        key = key_of(body)
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry.body["metadata"].get("uid") != body[
                    "metadata"].get("uid"):
                entry = self.entries[key] = Entry(body=body)
            elif not is_older(body, entry.body):
                entry.body = body
            return entry

    def forget(self, key: Key) -> None:
        with self.lock:
            self.entries.pop(key, None)

    def get(self, key: Key) -> Entry | None:
        with self.lock:
            return self.entries.get(key)

    def referencing(self, namespace: str, secret: str) -> list[Entry]:
        """The bindings in ``namespace`` whose URLs come from ``secret``."""
        with self.lock:
            entries = list(self.entries.values())
        return [
            entry for entry in entries
            if key_of(entry.body)[0] == namespace
            and secret in {name for name, _ in manifests.secret_refs(
                entry.body.get("spec") or {}).values()}
        ]


def plain(value: Any) -> Any:
    """A deep copy made of dicts and lists (kopf hands out read-only views)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def is_older(body: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    """Whether ``body`` is an older version of ``than``.

    A watch event can arrive after the operator's own write of the same
    object; taking it would undo the write in memory, and the next status
    patch, computed from it, would drop conditions.  resourceVersions are
    etcd revisions: compared as numbers when both are numbers.
    """
    mine = str(body["metadata"].get("resourceVersion", ""))
    theirs = str(than["metadata"].get("resourceVersion", ""))
    return mine.isdigit() and theirs.isdigit() and int(mine) < int(theirs)


def key_of(body: Mapping[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def reconcile(
    body: Mapping[str, Any], *, kube: Kube, cache: Cache, logger: kopf.Logger
) -> None:
    """Apply the binding's Deployment and record what came of it in its status.

    Raises :class:`kopf.TemporaryError` with a long delay when the binding
    cannot run yet (a missing Secret, an unsupported scheme): its status says
    why, and a change to the binding or the Secret retries sooner.
    """
    entry = cache.remember(body)
    entry.attempted_generation = body["metadata"].get("generation", 0)
    namespace, name = key_of(body)

    # Resolve the URLs first: a Deployment whose Secret is missing would only
    # leave pods failing to start, with the reason hidden in the pod events.
    try:
        resolved = resolve(manifests.spec_with_defaults(body),
                           lambda secret: kube.read_secret(namespace, secret))
    except ConfigProblem as problem:
        report_problem(entry, problem, kube=kube)
        logger.warning("cannot run the savers: %s", problem.message)
        raise kopf.TemporaryError(problem.message, delay=RETRY_CONFIG_S) from None

    deployment = apply(entry, resolved, kube=kube, default_image=cache.default_image)
    logger.info("applied Deployment %s/%s (%d replicas, checksum %.12s)",
                namespace, name, deployment["spec"].get("replicas", 0),
                _checksum_of(deployment))
    update_status(entry, deployment, kube=kube,
                  extra={"databaseScheme": resolved.database_scheme})
    autoscale(entry, queue_scheme=url_scheme(resolved.urls["queue"]), kube=kube,
              logger=logger)


def autoscale(
    entry: Entry, *, queue_scheme: str, kube: Kube, logger: kopf.Logger
) -> None:
    """Apply or remove the binding's KEDA ScaledObject, and say how it went.

    Without KEDA the savers keep running at their last replica count; kopf
    retries after its long delay, so installing KEDA later is noticed.
    """
    spec = manifests.spec_with_defaults(entry.body)
    generation = entry.body["metadata"].get("generation", 0)
    current = {c["type"]: c for c in (entry.body.get("status") or {}).get(
        "conditions") or []}.get("Autoscaling")
    namespace, name = key_of(entry.body)

    # Bindings that never autoscaled cost no request here.
    if not spec.get("autoscaling"):
        if current and current.get("reason") != "Disabled":
            kube.delete_scaled_object(namespace, name)
            write_status(entry, {}, [manifests.condition(
                "Autoscaling", False, "Disabled", "spec.autoscaling is not set",
                generation=generation)], kube=kube)
        return

    # KEDA dials the broker itself and knows no rabbitmq:// synonyms.
    if queue_scheme not in KEDA_QUEUE_SCHEMES:
        write_status(entry, {}, [manifests.condition(
            "Autoscaling", False, "QueueSchemeUnsupported",
            f"KEDA needs an amqp:// or amqps:// queue URL, not {queue_scheme}://",
            generation=generation)], kube=kube)
        return

    applied = kube.apply_scaled_object(manifests.scaled_object_for(entry.body))
    if applied is None:
        message = ("KEDA is not installed (no scaledobjects.keda.sh CRD): the "
                   "savers keep their current replica count")
        write_status(entry, {}, [manifests.condition(
            "Autoscaling", False, "KedaNotInstalled", message,
            generation=generation)], kube=kube)
        logger.warning("%s", message)
        raise kopf.TemporaryError(message, delay=RETRY_CONFIG_S)
    write_status(entry, {}, [manifests.condition(
        "Autoscaling", True, "ScaledObjectApplied",
        f"KEDA scales {name} on queue {manifests.queue_name(entry.body)}",
        generation=generation)], kube=kube)


def apply(
    entry: Entry, resolved: Resolved, *, kube: Kube, default_image: str
) -> dict[str, Any]:
    """Server-side apply the desired Deployment and remember it."""
    manifest = manifests.deployment_for(
        entry.body, secret_hashes=resolved.secret_hashes, default_image=default_image)
    deployment = kube.apply_deployment(manifest)
    entry.applied = manifests.project(manifest["spec"], deployment["spec"])
    entry.targets = {endpoint: resolved.target(endpoint) for endpoint in resolved.urls}
    return deployment


def report_problem(entry: Entry, problem: ConfigProblem, *, kube: Kube) -> None:
    """Ready=False and Degraded=True with the problem's reason."""
    generation = entry.body["metadata"].get("generation", 0)
    conditions = [
        manifests.condition("Ready", False, problem.reason, problem.message,
                            generation=generation),
        manifests.condition("Degraded", True, problem.reason, problem.message,
                            generation=generation),
    ]
    write_status(entry, {"observedGeneration": generation}, conditions, kube=kube)


def update_status(
    entry: Entry,
    deployment: Mapping[str, Any] | None,
    *,
    kube: Kube,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Mirror the Deployment's rollout in the binding's status."""
    fields = {**manifests.rollout_status(entry.body, deployment), **(extra or {})}
    conditions = manifests.rollout_conditions(entry.body, deployment)
    write_status(entry, fields, conditions, kube=kube)


def write_status(
    entry: Entry,
    fields: Mapping[str, Any],
    conditions: list[dict[str, Any]],
    *,
    kube: Kube,
) -> bool:
    """Patch the binding's status when it differs; True when it was written.

    One writer per binding at a time, comparing against the status it last
    saw, so that the handlers and the probe loop never undo each other.
    """
    with entry.lock:
        current = entry.body.get("status") or {}
        patch = manifests.status_patch(current, fields, conditions)
        if not patch:
            return False
        namespace, name = key_of(entry.body)
        written = kube.patch_binding_status(namespace, name, patch)
        if written is not None and not is_older(written, entry.body):
            entry.body = plain(written)
        return written is not None


def _checksum_of(deployment: Mapping[str, Any]) -> str:
    template = deployment.get("spec", {}).get("template", {})
    annotations = template.get("metadata", {}).get("annotations") or {}
    return annotations.get(manifests.CHECKSUM_ANNOTATION, "")

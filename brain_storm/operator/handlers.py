"""kopf handlers: when to reconcile a SaverBinding.

- a binding is created, changed (scaling included) or found at startup:
  apply its Deployment (reconcile.py);
- an owned Deployment is deleted or edited by hand: apply it again, and
  mirror its rollout in the binding's status (Ready follows its available
  replicas);
- a Secret that a binding reads a URL from changes: reconcile that binding,
  so the pods roll onto the new value;
- all the while, one loop checks that the databases and queues can be reached
  (probes.py).

No handler here needs a finalizer: deletion relies on the Deployment's
ownerReference and Kubernetes' garbage collector, and kopf's own bookkeeping
goes to annotations, so an operator that is gone never blocks a binding's or
a namespace's deletion.  Status is written only when it changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from brain_storm.operator import manifests
from brain_storm.operator.kube import Kube
from brain_storm.operator.probes import ProbeSettings, probe_forever
from brain_storm.operator.reconcile import Cache, key_of, reconcile, update_status

BINDINGS = {"group": manifests.GROUP, "version": manifests.VERSION,
            "plural": manifests.PLURAL}
OWNED = {"app.kubernetes.io/managed-by": manifests.MANAGER}


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo,
                logger: logging.Logger, **_: Any) -> None:
    """Configure kopf, connect to the API, and start the reachability loop."""
    # kopf's progress and last-handled state go to our own annotations, never
    # to a status field the CRD would prune, nor to a finalizer.
    prefix = manifests.GROUP
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration")
    settings.persistence.finalizer = f"{prefix}/finalizer"
    # Warnings and errors logged through a binding's logger become its
    # Kubernetes Events; routine progress stays in the operator's log.
    settings.posting.loggers = True
    settings.posting.level = logging.WARNING

    memo.settings = settings
    memo.kube = Kube.from_environment()
    memo.cache = Cache(default_image=os.environ.get(
        "BRAIN_STORM_SAVER_IMAGE", manifests.DEFAULT_IMAGE))
    probe_settings = ProbeSettings(
        interval_s=_env_float("BRAIN_STORM_OPERATOR_PROBE_INTERVAL_S", 60.0),
        retry_s=_env_float("BRAIN_STORM_OPERATOR_PROBE_RETRY_S", 5.0),
        timeout_s=_env_float("BRAIN_STORM_OPERATOR_PROBE_TIMEOUT_S", 3.0),
    )
    memo.probes = asyncio.create_task(
        probe_forever(memo.cache, memo.kube, probe_settings), name="probes")
    logger.info("saver image by default: %s", memo.cache.default_image)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, its service account; elsewhere, $KUBECONFIG as it is now."""
    return (kopf.login_with_service_account(**kwargs)
            or kopf.login_with_kubeconfig(**kwargs))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "probes", None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@kopf.on.resume(**BINDINGS)
@kopf.on.create(**BINDINGS)
@kopf.on.update(**BINDINGS)
def apply_binding(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger,
                  **_: Any) -> None:
    """Create or patch the binding's Deployment (same name, server-side apply)."""
    entry = memo.cache.remember(body)
    try:
        reconcile(body, kube=memo.kube, cache=memo.cache, logger=logger)
    except kopf.TemporaryError:
        entry.kopf_retry_pending = True
        raise
    entry.kopf_retry_pending = False


@kopf.on.event(**BINDINGS)
def track_binding(type: str, body: kopf.Body, memo: kopf.Memo,
                  logger: kopf.Logger, **_: Any) -> None:
    """Keep the operator's view of each binding current, for the other handlers.

    While kopf's own handler waits out a long retry delay, it would not see
    a new generation either: that one is reconciled here at once.
    """
    if type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        memo.cache.forget(key_of(body))
        return
    entry = memo.cache.remember(body)
    generation = body["metadata"].get("generation")
    if entry.kopf_retry_pending and generation != entry.attempted_generation:
        _reconcile_quietly(entry.body, memo=memo, logger=logger)


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
def watch_deployment(type: str, body: kopf.Body, memo: kopf.Memo,
                     **_: Any) -> None:
    """Repair a deleted or hand-edited Deployment; mirror its rollout in status."""
    entry = memo.cache.get(_owner_key(body))
    if entry is None or entry.body["metadata"]["uid"] != _owner_uid(body):
        return
    logger = kopf.ObjectLogger(body=entry.body, settings=memo.settings)

    # The spec is compared with what was applied last; the server's defaults
    # make the live object a superset, and anything else is drift.  Until
    # this operator has applied it once, the resume handler is on its way.
    drifted = entry.applied is not None and not manifests.is_subset(
        entry.applied, body.get("spec"))
    if type == "DELETED" or drifted:
        logger.warning("Deployment %s was %s; applying it again",
                       body["metadata"]["name"],
                       "deleted" if type == "DELETED" else "changed by hand")
        _reconcile_quietly(entry.body, memo=memo, logger=logger)
    elif entry.applied is not None:
        update_status(entry, body, kube=memo.kube)


@kopf.on.event("", "v1", "secrets")
def watch_secret(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile the bindings that read a URL from this Secret."""
    # The initial listing changes nothing: the resume handlers read the
    # Secrets themselves.
    if type is None:
        return
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for entry in memo.cache.referencing(namespace, name):
        logger = kopf.ObjectLogger(body=entry.body, settings=memo.settings)
        logger.info("Secret %s was %s; reconciling", name, type.lower())
        _reconcile_quietly(entry.body, memo=memo, logger=logger)


def _reconcile_quietly(body: dict[str, Any], *, memo: kopf.Memo,
                       logger: kopf.Logger) -> None:
    """Reconcile outside the binding's own handler: a configuration problem
    is already in its status and events, and kopf's retry of it is pending."""
    try:
        reconcile(body, kube=memo.kube, cache=memo.cache, logger=logger)
    except kopf.TemporaryError:
        pass


def _owner_key(body: kopf.Body) -> tuple[str, str]:
    return body["metadata"]["namespace"], _owner(body).get("name", "")


def _owner_uid(body: kopf.Body) -> str:
    return _owner(body).get("uid", "")


def _owner(body: kopf.Body) -> dict[str, Any]:
    for reference in body.get("metadata", {}).get("ownerReferences") or []:
        if reference.get("kind") == manifests.KIND and reference.get("controller"):
            return dict(reference)
    return {}


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default

"""Pure builders: what a SaverBinding's Deployment and status should look like.

Nothing here talks to Kubernetes.  Every function takes plain dicts (the
binding's body, the hashes of the Secret values it references, a Deployment's
status) and returns plain dicts, so that the handlers only decide *when* to
call the API and the tests can check *what* is sent without a server.

A password never reaches a manifest: a URL that comes from a Secret is passed
to the saver as ``valueFrom.secretKeyRef``, and a plain ``url`` is refused by
the CRD when it holds one.  URLs are passed through the environment only,
never in a container's arguments.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GROUP = "brain-storm.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SaverBinding"
PLURAL = "saverbindings"

APP_NAME = "brain-storm-saver"
MANAGER = "brain-storm-operator"
CHECKSUM_ANNOTATION = f"{GROUP}/config-checksum"
METRICS_PORT = 9466
DEFAULT_IMAGE = "brain-storm:0.1.0"
NON_ROOT_UID = 65532

# The saver's defaults, repeated so that a binding stored before the CRD had
# defaults (or built by hand in a test) still gets a complete manifest.
DEFAULTS: dict[str, Any] = {
    "replicas": 1,
    "paused": False,
    "prefetchCount": 1000,
    "batchSize": 500,
    "flushIntervalSeconds": 0.05,
    "drainTimeoutSeconds": 20,
}
GRACE_MARGIN_S = 10
"""Seconds on top of the drain and a last flush before the kubelet kills."""

ENDPOINTS = {"database": "BRAIN_STORM_DATABASE_URL", "queue": "BRAIN_STORM_QUEUE_URL"}
"""The saver's environment variable for each endpoint of the spec."""

ROLLING_FIELDS = ("database", "queue", "topics", "prefetchCount", "batchSize",
                  "flushIntervalSeconds", "drainTimeoutSeconds", "image", "resources")
"""Spec fields that change the pod template; scaling fields are left out so
that `kubectl scale` or a pause does not roll every pod."""


def labels_for(name: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels of a binding's objects."""
    return {
        **selector_labels_for(name),
        "app.kubernetes.io/component": "saver",
        "app.kubernetes.io/part-of": "brain-storm",
        "app.kubernetes.io/managed-by": MANAGER,
    }


def selector_labels_for(name: str) -> dict[str, str]:
    """The labels that select a binding's pods; they never change."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": name}


def selector_string(name: str) -> str:
    """The pods' selector as text, for the scale subresource."""
    labels = selector_labels_for(name)
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def owner_reference(binding: Mapping[str, Any]) -> dict[str, Any]:
    """An ownerReference making the binding the controller of an object."""
    metadata = binding["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def spec_with_defaults(binding: Mapping[str, Any]) -> dict[str, Any]:
    """The binding's spec with the saver's defaults filled in."""
    return {**DEFAULTS, **dict(binding.get("spec") or {})}


def secret_refs(spec: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``{endpoint: (secret name, key)}`` for each URL that comes from a Secret."""
    refs = {}
    for endpoint in ENDPOINTS:
        ref = ((spec.get(endpoint) or {}).get("urlFrom") or {}).get("secretKeyRef")
        if ref:
            refs[endpoint] = (ref["name"], ref["key"])
    return refs


def value_hash(value: str | bytes) -> str:
    """A short digest of a Secret value, safe to show: it cannot be reversed."""
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()[:16]


def config_checksum(spec: Mapping[str, Any], secret_hashes: Mapping[str, str]) -> str:
    """A digest of everything that should restart the savers when it changes.

    ``secret_hashes`` maps each endpoint read from a Secret to a hash of the
    value (see :func:`value_hash`), so a changed Secret rolls the pods too.
    """
    rolling = {field: spec.get(field) for field in ROLLING_FIELDS}
    text = json.dumps({"spec": rolling, "secrets": dict(secret_hashes)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def queue_name(binding: Mapping[str, Any]) -> str:
    """The queue a binding's savers share: one per binding, so that two
    bindings on one broker never take each other's messages."""
    metadata = binding["metadata"]
    return f"brain_storm.saver.{metadata['namespace']}.{metadata['name']}"


def desired_replicas(spec: Mapping[str, Any]) -> int | None:
    """Replicas the Deployment should run: none while paused, and left to
    KEDA (None) while autoscaling is on."""
    if spec.get("paused"):
        return 0
    if spec.get("autoscaling"):
        return None
    return int(spec.get("replicas", 1))


def termination_grace_s(spec: Mapping[str, Any]) -> int:
    """Time to drain, save a last partial batch, and exit."""
    drain_s = float(spec["drainTimeoutSeconds"])
    flush_s = float(spec["flushIntervalSeconds"])
    return math.ceil(drain_s + flush_s) + GRACE_MARGIN_S


def deployment_for(
    binding: Mapping[str, Any],
    *,
    secret_hashes: Mapping[str, str],
    default_image: str = DEFAULT_IMAGE,
) -> dict[str, Any]:
    """The Deployment that runs a binding's savers, named after the binding."""
    name = binding["metadata"]["name"]
    spec = spec_with_defaults(binding)
    template = {
        "metadata": {
            "labels": labels_for(name),
            "annotations": {CHECKSUM_ANNOTATION: config_checksum(spec, secret_hashes)},
        },
        "spec": pod_spec_for(spec, queue=queue_name(binding),
                             default_image=default_image),
    }
    deployment_spec = {
        "replicas": desired_replicas(spec),
        "selector": {"matchLabels": selector_labels_for(name)},
        "template": template,
    }
    # Under autoscaling the replicas are KEDA's: leaving them out of the
    # applied manifest gives up our field ownership instead of fighting it.
    if deployment_spec["replicas"] is None:
        del deployment_spec["replicas"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata_for(binding),
        "spec": deployment_spec,
    }


def _metadata_for(binding: Mapping[str, Any]) -> dict[str, Any]:
    name = binding["metadata"]["name"]
    return {
        "name": name,
        "namespace": binding["metadata"]["namespace"],
        "labels": labels_for(name),
        "ownerReferences": [owner_reference(binding)],
    }


KEDA_API_VERSION = "keda.sh/v1alpha1"
KEDA_PAUSED_ANNOTATION = "autoscaling.keda.sh/paused-replicas"


def scaled_object_for(binding: Mapping[str, Any]) -> dict[str, Any]:
    """A KEDA ScaledObject scaling the binding's Deployment on its queue's depth.

    KEDA reads the broker URL from the saver container's own environment
    (``hostFromEnv``), so a URL from a Secret is never copied anywhere.
    """
    spec = spec_with_defaults(binding)
    autoscaling = {"minReplicas": 1, "messagesPerReplica": 1000,
                   **dict(spec["autoscaling"])}
    metadata = _metadata_for(binding)
    if spec.get("paused"):
        metadata["annotations"] = {KEDA_PAUSED_ANNOTATION: "0"}
    trigger = {
        "type": "rabbitmq",
        "metadata": {
            "protocol": "amqp",
            "mode": "QueueLength",
            "value": str(autoscaling["messagesPerReplica"]),
            "queueName": queue_name(binding),
            "hostFromEnv": ENDPOINTS["queue"],
        },
    }
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"name": binding["metadata"]["name"]},
            "minReplicaCount": autoscaling["minReplicas"],
            "maxReplicaCount": autoscaling["maxReplicas"],
            "triggers": [trigger],
        },
    }


def pod_spec_for(
    spec: Mapping[str, Any], *, queue: str, default_image: str
) -> dict[str, Any]:
    """A locked-down pod that runs one saver."""
    return {
        "terminationGracePeriodSeconds": termination_grace_s(spec),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_UID,
            "runAsGroup": NON_ROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container_for(spec, queue=queue, default_image=default_image)],
        # The root filesystem is read-only; Python and the drivers may still
        # want a scratch folder.
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }


def container_for(
    spec: Mapping[str, Any], *, queue: str, default_image: str
) -> dict[str, Any]:
    """The saver container: the command, its environment and its probes."""
    container: dict[str, Any] = {
        "name": "saver",
        "image": spec.get("image") or default_image,
        "command": ["python", "-m", "brain_storm.saver", "run-saver"],
        "env": env_for(spec, queue=queue),
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT,
                   "protocol": "TCP"}],
        "readinessProbe": _http_probe("/readyz", period_s=5, failures=3),
        "livenessProbe": _http_probe("/healthz", period_s=10, failures=6),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if spec.get("resources"):
        container["resources"] = dict(spec["resources"])
    return container


def env_for(spec: Mapping[str, Any], *, queue: str) -> list[dict[str, Any]]:
    """run-saver's configuration, as the environment variables it reads."""
    env = [_url_env(variable, spec[endpoint])
           for endpoint, variable in ENDPOINTS.items()]
    settings = {
        "BRAIN_STORM_TOPICS": ",".join(spec["topics"]),
        "BRAIN_STORM_EXCHANGE": (spec["queue"] or {}).get("exchange"),
        "BRAIN_STORM_QUEUE": queue,
        "BRAIN_STORM_PREFETCH_COUNT": spec["prefetchCount"],
        "BRAIN_STORM_BATCH_SIZE": spec["batchSize"],
        "BRAIN_STORM_FLUSH_INTERVAL_S": spec["flushIntervalSeconds"],
        "BRAIN_STORM_DRAIN_TIMEOUT_S": spec["drainTimeoutSeconds"],
        # The probes come from the kubelet, so the endpoint listens on the
        # pod's address, not on loopback as the saver does by default.
        "BRAIN_STORM_METRICS_HOST": "0.0.0.0",
        "BRAIN_STORM_METRICS_PORT": METRICS_PORT,
        "BRAIN_STORM_LOG_FORMAT": "json",
    }
    env += [{"name": name, "value": str(value)}
            for name, value in settings.items() if value is not None]
    return env


def _url_env(variable: str, endpoint: Mapping[str, Any]) -> dict[str, Any]:
    ref = (endpoint.get("urlFrom") or {}).get("secretKeyRef")
    if ref:
        secret_ref = {"name": ref["name"], "key": ref["key"]}
        return {"name": variable, "valueFrom": {"secretKeyRef": secret_ref}}
    return {"name": variable, "value": endpoint["url"]}


def _http_probe(path: str, *, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "metrics", "scheme": "HTTP"},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


# ---- status -----------------------------------------------------------------

def condition(
    kind: str, status: bool | None, reason: str, message: str, *, generation: int
) -> dict[str, Any]:
    """A condition without its transition time (see :func:`merge_conditions`)."""
    text = "Unknown" if status is None else ("True" if status else "False")
    return {"type": kind, "status": text, "reason": reason, "message": message,
            "observedGeneration": generation}


def merge_conditions(
    current: list[Mapping[str, Any]] | None,
    updates: list[Mapping[str, Any]],
    *,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """``current`` with ``updates`` applied, keeping the transition times of
    conditions whose status did not change, in a stable order."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    merged = {entry["type"]: dict(entry) for entry in current or []}
    for update in updates:
        old = merged.get(update["type"])
        changed = old is None or old.get("status") != update["status"]
        since = stamp if changed else old.get("lastTransitionTime", stamp)
        merged[update["type"]] = {**update, "lastTransitionTime": since}
    return [merged[kind] for kind in sorted(merged)]


def rollout_conditions(
    binding: Mapping[str, Any], deployment: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Ready, Progressing and Degraded, read from the owned Deployment."""
    generation = binding["metadata"].get("generation", 0)
    if deployment is None:
        return [
            condition("Ready", False, "DeploymentMissing",
                      "the saver Deployment does not exist yet", generation=generation),
            condition("Progressing", True, "Creating",
                      "creating the saver Deployment", generation=generation),
        ]

    spec = spec_with_defaults(binding)
    wanted = desired_replicas(spec)
    if wanted is None:  # KEDA decides; the Deployment says what it decided
        wanted = int((deployment.get("spec") or {}).get("replicas") or 0)
    observed = deployment.get("status") or {}
    updated = int(observed.get("updatedReplicas") or 0)
    caught_up = (observed.get("observedGeneration", -1)
                 >= deployment["metadata"].get("generation", 0))
    rolling = not caught_up or updated < wanted
    failed = _deployment_failure(observed)

    progressing = (
        condition("Progressing", True, "RollingOut",
                  f"{updated}/{wanted} replicas updated", generation=generation)
        if rolling else
        condition("Progressing", False, "Complete", "the rollout is complete",
                  generation=generation)
    )
    degraded = (
        condition("Degraded", True, "DeploymentFailed", failed, generation=generation)
        if failed else
        condition("Degraded", False, "AsExpected", "", generation=generation)
    )
    ready = _ready(spec, wanted, int(observed.get("availableReplicas") or 0),
                   rolling=rolling, generation=generation)
    return [ready, progressing, degraded]


def _ready(
    spec: Mapping[str, Any], wanted: int, available: int, *, rolling: bool,
    generation: int,
) -> dict[str, Any]:
    """Ready: every wanted replica available and no rollout under way."""
    counts = f"{available}/{wanted} replicas available"
    if spec.get("paused"):
        return condition("Ready", False, "Paused", "spec.paused is true: 0 replicas",
                         generation=generation)
    if wanted == 0:
        return condition("Ready", False, "ScaledToZero", "0 replicas wanted",
                         generation=generation)
    if available >= wanted and not rolling:
        return condition("Ready", True, "Available", counts, generation=generation)
    return condition("Ready", False, "Unavailable", counts, generation=generation)


def _deployment_failure(observed: Mapping[str, Any]) -> str:
    """The Deployment controller's own failure message, or ``""``."""
    for entry in observed.get("conditions") or []:
        if entry.get("type") == "ReplicaFailure" and entry.get("status") == "True":
            return entry.get("message", "ReplicaFailure")
        if (entry.get("type") == "Progressing"
                and entry.get("reason") == "ProgressDeadlineExceeded"):
            return entry.get("message", "ProgressDeadlineExceeded")
    return ""


def rollout_status(
    binding: Mapping[str, Any], deployment: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The scalar status fields that mirror the Deployment."""
    observed = (deployment or {}).get("status") or {}
    return {
        "replicas": int(observed.get("replicas") or 0),
        "readyReplicas": int(observed.get("readyReplicas") or 0),
        "selector": selector_string(binding["metadata"]["name"]),
        "observedGeneration": binding["metadata"].get("generation", 0),
    }


def status_patch(
    current: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
    conditions: list[Mapping[str, Any]],
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The merge patch that brings ``current`` status up to date, or ``{}``.

    An empty patch means nothing changed, and nothing should be written: idle
    bindings cost the API server no writes.
    """
    current = current or {}
    patch = {key: value for key, value in fields.items() if current.get(key) != value}
    merged = merge_conditions(current.get("conditions"), conditions, now=now)
    if merged != list(current.get("conditions") or []):
        patch["conditions"] = merged
    return patch


def project(wanted: Any, actual: Any) -> Any:
    """The parts of ``actual`` at the places ``wanted`` has values, so that
    what was applied can be remembered as the server normalised it (quantities
    such as ``cpu: 0.5`` come back as ``500m``)."""
    if isinstance(wanted, Mapping) and isinstance(actual, Mapping):
        return {key: project(value, actual[key])
                for key, value in wanted.items() if key in actual}
    if (isinstance(wanted, list) and isinstance(actual, list)
            and len(wanted) == len(actual)):
        return [project(w, a) for w, a in zip(wanted, actual, strict=True)]
    return actual


def is_subset(wanted: Any, actual: Any) -> bool:
    """Whether ``actual`` holds everything in ``wanted`` (the API server adds
    defaults, so a live object is a superset of the manifest it came from)."""
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and is_subset(value, actual[key])
            for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (isinstance(actual, list) and len(wanted) == len(actual)
                and all(is_subset(w, a) for w, a in zip(wanted, actual, strict=True)))
    return wanted == actual

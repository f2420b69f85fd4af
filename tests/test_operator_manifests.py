"""Unit tests of the operator's pure builders: no server, no kopf loop."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kopf")
yaml = pytest.importorskip("yaml")

from brain_storm.operator import manifests  # noqa: E402
from brain_storm.operator.endpoints import (  # noqa: E402
    ConfigProblem,
    probe_target,
    resolve,
)
from brain_storm.operator.reconcile import Cache  # noqa: E402

PASSWORD = "pw-Secret-42!"
CRD = Path(__file__).parent.parent / "deploy/crds/brain-storm.io_saverbindings.yaml"


def binding(**spec: Any) -> dict[str, Any]:
    base = {
        "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        "queue": {"url": "amqp://rabbitmq:5672/", "exchange": "results"},
        "topics": ["pose", "feelings"],
    }
    return {
        "apiVersion": "brain-storm.io/v1alpha1",
        "kind": "SaverBinding",
        "metadata": {"name": "savers", "namespace": "team", "uid": "uid-1",
                     "generation": 3},
        "spec": {**base, **spec},
    }


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", item.get("valueFrom"))
            for item in container["env"]}


def checksum_of(deployment: dict[str, Any]) -> str:
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    return annotations[manifests.CHECKSUM_ANNOTATION]


def test_deployment_is_named_after_and_owned_by_its_binding() -> None:
    deployment = manifests.deployment_for(binding(), secret_hashes={})

    assert deployment["metadata"]["name"] == "savers"
    assert deployment["metadata"]["namespace"] == "team"
    [owner] = deployment["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "brain-storm.io/v1alpha1", "kind": "SaverBinding",
                     "name": "savers", "uid": "uid-1", "controller": True,
                     "blockOwnerDeletion": True}


def test_labels_follow_the_recommended_set_and_select_the_pods() -> None:
    deployment = manifests.deployment_for(binding(), secret_hashes={})

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "savers"
    assert labels["app.kubernetes.io/managed-by"] == "brain-storm-operator"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert manifests.selector_string("savers") == ",".join(
        f"{k}={v}" for k, v in sorted(selector.items()))


def test_a_secret_url_is_passed_by_reference_and_a_plain_url_by_value() -> None:
    env = env_of(manifests.deployment_for(binding(), secret_hashes={}))

    assert env["BRAIN_STORM_DATABASE_URL"] == {
        "secretKeyRef": {"name": "db", "key": "url"}}
    assert env["BRAIN_STORM_QUEUE_URL"] == "amqp://rabbitmq:5672/"


def test_urls_never_reach_the_command_line() -> None:
    deployment = manifests.deployment_for(binding(), secret_hashes={})

    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "brain_storm.saver", "run-saver"]
    assert "args" not in container
    assert "amqp://" not in " ".join(container["command"])


def test_every_option_becomes_the_savers_environment() -> None:
    spec = {"prefetchCount": 200, "batchSize": 50, "flushIntervalSeconds": 0.5,
            "drainTimeoutSeconds": 30}
    env = env_of(manifests.deployment_for(binding(**spec), secret_hashes={}))

    assert env["BRAIN_STORM_TOPICS"] == "pose,feelings"
    assert env["BRAIN_STORM_EXCHANGE"] == "results"
    assert env["BRAIN_STORM_QUEUE"] == "brain_storm.saver.team.savers"
    assert env["BRAIN_STORM_PREFETCH_COUNT"] == "200"
    assert env["BRAIN_STORM_BATCH_SIZE"] == "50"
    assert env["BRAIN_STORM_FLUSH_INTERVAL_S"] == "0.5"
    assert env["BRAIN_STORM_DRAIN_TIMEOUT_S"] == "30"
    assert env["BRAIN_STORM_METRICS_HOST"] == "0.0.0.0"
    assert env["BRAIN_STORM_METRICS_PORT"] == "9466"
    assert all(isinstance(value, (str, dict)) for value in env.values())


def test_an_unset_exchange_leaves_the_savers_default() -> None:
    spec = binding(queue={"url": "amqp://rabbitmq/"})

    assert "BRAIN_STORM_EXCHANGE" not in env_of(
        manifests.deployment_for(spec, secret_hashes={}))


def test_probes_watch_the_metrics_port() -> None:
    deployment = manifests.deployment_for(binding(), secret_hashes={})

    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9466,
                                   "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["port"] == "metrics"


def test_the_pod_is_locked_down() -> None:
    pod = manifests.deployment_for(binding(), secret_hashes={})["spec"]["template"]["spec"]

    context = pod["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False


def test_grace_period_covers_the_drain_and_a_last_flush() -> None:
    spec = binding(drainTimeoutSeconds=30, flushIntervalSeconds=2.5)

    pod = manifests.deployment_for(spec, secret_hashes={})["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 33 + manifests.GRACE_MARGIN_S


@pytest.mark.parametrize(("spec", "replicas"), [
    ({}, 1), ({"replicas": 4}, 4), ({"replicas": 4, "paused": True}, 0),
    ({"replicas": 0}, 0),
])
def test_replicas_follow_the_spec_and_pausing(spec: dict[str, Any], replicas: int) -> None:
    deployment = manifests.deployment_for(binding(**spec), secret_hashes={})

    assert deployment["spec"]["replicas"] == replicas


def test_autoscaling_leaves_replicas_to_keda() -> None:
    spec = binding(autoscaling={"minReplicas": 0, "maxReplicas": 5,
                                "messagesPerReplica": 200})

    deployment = manifests.deployment_for(spec, secret_hashes={})
    scaled = manifests.scaled_object_for(spec)
    assert "replicas" not in deployment["spec"]
    assert scaled["spec"]["scaleTargetRef"] == {"name": "savers"}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 5)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == "brain_storm.saver.team.savers"
    assert trigger["metadata"]["value"] == "200"
    assert trigger["metadata"]["hostFromEnv"] == "BRAIN_STORM_QUEUE_URL"
    assert scaled["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_a_paused_autoscaled_binding_pauses_keda_too() -> None:
    spec = binding(paused=True, autoscaling={"maxReplicas": 5})

    assert manifests.deployment_for(spec, secret_hashes={})["spec"]["replicas"] == 0
    annotations = manifests.scaled_object_for(spec)["metadata"]["annotations"]
    assert annotations == {"autoscaling.keda.sh/paused-replicas": "0"}


def test_resources_are_passed_through_only_when_given() -> None:
    resources = {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}

    with_them = manifests.deployment_for(binding(resources=resources), secret_hashes={})
    without = manifests.deployment_for(binding(), secret_hashes={})
    assert with_them["spec"]["template"]["spec"]["containers"][0]["resources"] == resources
    assert "resources" not in without["spec"]["template"]["spec"]["containers"][0]


def test_image_defaults_to_the_operators_choice() -> None:
    chosen = manifests.deployment_for(binding(image="registry/saver:2"), secret_hashes={})
    default = manifests.deployment_for(binding(), secret_hashes={}, default_image="x:1")

    assert chosen["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/saver:2"
    assert default["spec"]["template"]["spec"]["containers"][0]["image"] == "x:1"


def test_checksum_changes_with_the_spec_and_the_secret_but_not_with_scale() -> None:
    base = checksum_of(manifests.deployment_for(binding(), secret_hashes={"database": "a"}))

    topics = manifests.deployment_for(binding(topics=["pose"]), secret_hashes={"database": "a"})
    secret = manifests.deployment_for(binding(), secret_hashes={"database": "b"})
    scaled = manifests.deployment_for(binding(replicas=7, paused=True),
                                      secret_hashes={"database": "a"})
    assert checksum_of(topics) != base
    assert checksum_of(secret) != base
    assert checksum_of(scaled) == base


def test_no_password_reaches_the_manifest() -> None:
    url = f"postgresql://saver:{PASSWORD}@db:5432/x"
    secret = {"data": {"url": base64.b64encode(url.encode()).decode()}}
    resolved = resolve(manifests.spec_with_defaults(binding()), lambda name: secret)

    deployment = manifests.deployment_for(binding(), secret_hashes=resolved.secret_hashes)
    assert PASSWORD not in repr(deployment)
    assert resolved.urls["database"] == url


def test_resolve_reports_a_missing_secret_and_a_missing_key() -> None:
    spec = manifests.spec_with_defaults(binding())

    with pytest.raises(ConfigProblem) as missing:
        resolve(spec, lambda name: None)
    with pytest.raises(ConfigProblem) as no_key:
        resolve(spec, lambda name: {"data": {"other": "eA=="}})
    assert missing.value.reason == "SecretNotFound"
    assert "'db'" in missing.value.message
    assert no_key.value.reason == "SecretKeyNotFound"


def test_resolve_refuses_an_unknown_scheme_without_showing_the_password() -> None:
    url = f"oracle://saver:{PASSWORD}@db/x"
    secret = {"data": {"url": base64.b64encode(url.encode()).decode()}}

    with pytest.raises(ConfigProblem) as problem:
        resolve(manifests.spec_with_defaults(binding()), lambda name: secret)
    assert problem.value.reason == "UnsupportedScheme"
    assert "oracle://" in problem.value.message
    assert "postgresql://" in problem.value.message
    assert PASSWORD not in problem.value.message


def test_resolve_refuses_a_queue_that_is_not_rabbitmq() -> None:
    spec = manifests.spec_with_defaults(binding(
        database={"url": "sqlite:///tmp/x.db"}, queue={"url": "kafka://broker:9092"}))

    with pytest.raises(ConfigProblem, match="kafka://"):
        resolve(spec, lambda name: None)


@pytest.mark.parametrize(("url", "target"), [
    ("postgresql://u@db.example:6543/x", ("db.example", 6543)),
    ("postgresql://u@db/x", ("db", 5432)),
    ("mongodb://a:1,b:2/x", ("a", 1)),
    ("amqps://rabbit/", ("rabbit", 5671)),
    (f"rabbitmq://u:{PASSWORD}@[::1]:5673/", ("::1", 5673)),
])
def test_probe_target_is_the_first_host_and_port(url: str, target: tuple[str, int]) -> None:
    assert probe_target(url) == target


def test_sqlite_is_not_probed_over_the_network() -> None:
    assert isinstance(probe_target("sqlite:////data/x.db"), str)


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    early = datetime(2026, 1, 1, tzinfo=UTC)
    late = datetime(2026, 1, 2, tzinfo=UTC)
    ready = manifests.condition("Ready", True, "Available", "1/1", generation=1)
    [first] = manifests.merge_conditions([], [ready], now=early)

    [same] = manifests.merge_conditions([first], [{**ready, "message": "2/2"}], now=late)
    not_ready = manifests.condition("Ready", False, "Unavailable", "0/1", generation=1)
    [flipped] = manifests.merge_conditions([first], [not_ready], now=late)
    assert same["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert flipped["lastTransitionTime"] == "2026-01-02T00:00:00Z"


def test_an_unchanged_status_needs_no_write() -> None:
    fields = {"replicas": 1, "readyReplicas": 1}
    ready = manifests.condition("Ready", True, "Available", "1/1", generation=1)
    first = manifests.status_patch({}, fields, [ready])

    assert first["replicas"] == 1 and first["conditions"][0]["type"] == "Ready"
    assert manifests.status_patch(first, fields, [ready]) == {}


def test_ready_follows_the_available_replicas() -> None:
    deployment = {"metadata": {"generation": 2},
                  "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                             "availableReplicas": 1, "readyReplicas": 1}}

    conditions = {c["type"]: c for c in manifests.rollout_conditions(binding(), deployment)}
    waiting = {c["type"]: c for c in manifests.rollout_conditions(
        binding(), {"metadata": {"generation": 2}, "status": {}})}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Progressing"]["status"] == "False"
    assert waiting["Ready"]["reason"] == "Unavailable"
    assert waiting["Progressing"]["status"] == "True"


def test_a_paused_binding_says_so() -> None:
    deployment = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1}}
    conditions = manifests.rollout_conditions(binding(paused=True), deployment)

    ready = next(c for c in conditions if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Paused")


def test_is_subset_ignores_server_defaults_but_not_edits() -> None:
    wanted = {"a": 1, "list": [{"name": "x", "value": "1"}]}

    assert manifests.is_subset(wanted, {"a": 1, "b": 2,
                                        "list": [{"name": "x", "value": "1", "d": 0}]})
    assert not manifests.is_subset(wanted, {"a": 2, "list": [{"name": "x", "value": "1"}]})
    assert not manifests.is_subset(wanted, {"a": 1, "list": []})


def test_what_was_applied_is_remembered_as_the_server_normalised_it() -> None:
    wanted = {"replicas": 1, "resources": {"requests": {"cpu": "0.5"}}, "list": [{"a": 1}]}
    live = {"replicas": 1, "paused": False, "resources": {"requests": {"cpu": "500m"}},
            "list": [{"a": 1, "b": 2}]}

    remembered = manifests.project(wanted, live)
    assert remembered == {"replicas": 1, "resources": {"requests": {"cpu": "500m"}},
                          "list": [{"a": 1}]}
    assert manifests.is_subset(remembered, live)


def test_a_stale_watch_event_does_not_undo_a_newer_body_in_the_cache() -> None:
    cache = Cache()
    newer = {**binding(), "status": {"conditions": [{"type": "QueueReachable"}]}}
    newer["metadata"] = {**newer["metadata"], "resourceVersion": "20"}
    older = {**binding(), "metadata": {**binding()["metadata"], "resourceVersion": "9"}}

    cache.remember(newer)
    entry = cache.remember(older)
    assert entry.body["status"]["conditions"] == [{"type": "QueueReachable"}]

    replaced = {**binding(), "metadata": {**binding()["metadata"], "uid": "uid-2",
                                          "resourceVersion": "3"}}
    assert cache.remember(replaced).body["metadata"]["uid"] == "uid-2"


def test_every_crd_field_has_a_description() -> None:
    crd = yaml.safe_load(CRD.read_text())
    [version] = crd["spec"]["versions"]

    missing = list(_undescribed(version["schema"]["openAPIV3Schema"], "."))
    assert missing == [], f"fields without a description: {missing}"
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}


def _undescribed(schema: dict[str, Any], path: str) -> Any:
    for name, child in (schema.get("properties") or {}).items():
        if name != "metadata" and "description" not in child:
            yield f"{path}{name}"
        yield from _undescribed(child, f"{path}{name}.")
    if "items" in schema:
        yield from _undescribed(schema["items"], f"{path}[].")

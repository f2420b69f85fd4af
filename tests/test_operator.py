"""The operator against a real kube-apiserver (etcd + kube-apiserver only).

The last test goes end to end: a small harness plays the kubelet, running each
Deployment's saver container as local processes against a real RabbitMQ and
PostgreSQL, so that applying examples/saverbinding.yaml ends with rows.

scripts/control-plane.sh starts the control plane once per session, on
127.0.0.1; each test gets a fresh namespace and an operator of its own
(kopf.testing.KopfRunner, in this process) that serves only that namespace.

There is no kubelet, controller-manager or garbage collector: Deployments
never get pods, so a test plays the Deployment controller by writing the
Deployment's status, and checks ownerReferences instead of cascading
deletion.  Deleted namespaces stay Terminating, so every name is fresh.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

kopf_testing = pytest.importorskip("kopf.testing")
kubernetes = pytest.importorskip("kubernetes")
yaml = pytest.importorskip("yaml")

from kubernetes import client  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

ROOT = Path(__file__).parent.parent
CONTROL_PLANE = ROOT / "scripts/control-plane.sh"
CRD = ROOT / "deploy/crds/brain-storm.io_saverbindings.yaml"
GROUP, VERSION, PLURAL = "brain-storm.io", "v1alpha1", "saverbindings"
CHECKSUM = "brain-storm.io/config-checksum"
PASSWORD = "pw-Secret-42!"  # must never reach the operator's output or the API
T = TypeVar("T")


# ---- fixtures ---------------------------------------------------------------

@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """etcd + kube-apiserver for the session, with the CRD installed."""
    folder = tmp_path_factory.mktemp("control-plane")
    _control_plane("build")
    _control_plane("start", str(folder))
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(folder / "kubeconfig")
    try:
        _install_crd(_api_client(folder / "kubeconfig"))
        yield folder
    finally:
        _control_plane("stop", str(folder), check=False)
        if saved is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved


def _control_plane(*arguments: str, check: bool = True,
                   env: dict[str, str] | None = None) -> None:
    """Run scripts/control-plane.sh; a failure shows the script's own words."""
    result = subprocess.run([str(CONTROL_PLANE), *arguments], capture_output=True,
                            text=True, env=env)
    if check and result.returncode != 0:
        pytest.fail(f"scripts/control-plane.sh {' '.join(arguments)} failed:\n"
                    f"{result.stderr[-3000:]}", pytrace=False)


@pytest.fixture
def kube(control_plane: Path) -> Kube:
    return Kube(_api_client(control_plane / "kubeconfig"))


@pytest.fixture
def namespace(kube: Kube) -> str:
    name = f"op-{uuid.uuid4().hex[:10]}"
    kube.core.create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(autouse=True)
def fast_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAIN_STORM_OPERATOR_PROBE_INTERVAL_S", "2")
    monkeypatch.setenv("BRAIN_STORM_OPERATOR_PROBE_RETRY_S", "0.5")
    monkeypatch.setenv("BRAIN_STORM_OPERATOR_PROBE_TIMEOUT_S", "1")


@contextlib.contextmanager
def operator(namespace: str) -> Iterator[Any]:
    """The operator serving ``namespace``, stopped on leaving; its output must
    never hold the password."""
    arguments = ["run", "--standalone", "--namespace", namespace,
                 "-m", "brain_storm.operator.handlers"]
    with kopf_testing.KopfRunner(arguments, timeout=60) as runner:
        yield runner
    assert runner.exception is None
    assert PASSWORD not in runner.output


@pytest.fixture
def running(namespace: str) -> Iterator[Any]:
    with operator(namespace) as runner:
        yield runner


def _api_client(kubeconfig: Path) -> client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=str(kubeconfig))


def _install_crd(api_client: client.ApiClient) -> None:
    _install_crd_body(Kube(api_client), yaml.safe_load(CRD.read_text()))


class Kube:
    """The test's own API calls."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def create_binding(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SaverBinding",
                "metadata": {"name": name}, "spec": {**base_spec(), **spec}}
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body)

    def binding(self, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name)

    def patch_binding(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": spec},
            _content_type="application/merge-patch+json")

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self.apps.read_namespaced_deployment(
                name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return yaml.safe_load(response.data)

    def deployments(self, namespace: str) -> list[str]:
        return [item.metadata.name
                for item in self.apps.list_namespaced_deployment(namespace).items]

    def put_secret(self, namespace: str, name: str, url: str) -> None:
        body = {"metadata": {"name": name},
                "data": {"url": base64.b64encode(url.encode()).decode()}}
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
            self.core.replace_namespaced_secret(name, namespace, body)

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any]:
        status = self.binding(namespace, name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})

    def events(self, namespace: str) -> list[str]:
        return [f"{e.reason}: {e.message}"
                for e in self.core.list_namespaced_event(namespace).items]


def base_spec() -> dict[str, Any]:
    return {
        "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        "queue": {"url": "amqp://127.0.0.1:1/"},
        "topics": ["pose", "feelings"],
    }


def wait_for(probe: Callable[[], T], *, timeout_s: float = 20, what: str = "") -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def checksum_of(deployment: dict[str, Any]) -> str:
    return deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM]


def db_url(port: int = 1) -> str:
    return f"postgresql://saver:{PASSWORD}@127.0.0.1:{port}/brain_storm"


@contextlib.contextmanager
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


# ---- tests --------------------------------------------------------------------

def test_a_binding_gets_one_owned_deployment_with_env_and_probes(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.put_secret(namespace, "db", db_url())
    created = kube.create_binding(namespace, "savers")

    deployment = wait_for(lambda: kube.deployment(namespace, "savers"), what="Deployment")
    env = env_of(deployment)
    assert env["BRAIN_STORM_DATABASE_URL"] == {
        "secretKeyRef": {"name": "db", "key": "url"}}
    assert env["BRAIN_STORM_QUEUE_URL"] == "amqp://127.0.0.1:1/"
    assert env["BRAIN_STORM_TOPICS"] == "pose,feelings"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    [owner] = deployment["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "SaverBinding", created["metadata"]["uid"], True)

    # Without a kubelet nothing becomes available: Ready says so.
    ready = wait_for(lambda: kube.condition(namespace, "savers", "Ready"), what="Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unavailable")
    binding = kube.binding(namespace, "savers")
    assert binding["status"]["databaseScheme"] == "postgresql"
    assert binding["status"]["selector"] == (
        "app.kubernetes.io/instance=savers,app.kubernetes.io/name=brain-storm-saver")
    assert not binding["metadata"].get("finalizers")
    assert PASSWORD not in repr(binding) + repr(deployment)


def test_ready_follows_the_deployments_available_replicas(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.put_secret(namespace, "db", db_url())
    kube.create_binding(namespace, "savers", replicas=2,
                        resources={"requests": {"cpu": "0.5", "memory": "0.125Gi"}})
    deployment = wait_for(lambda: kube.deployment(namespace, "savers"), what="Deployment")

    # Play the Deployment controller: two replicas up and available.
    kube.apps.patch_namespaced_deployment_status("savers", namespace, {"status": {
        "observedGeneration": deployment["metadata"]["generation"], "replicas": 2,
        "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}})

    wait_for(lambda: kube.condition(namespace, "savers", "Ready").get("status") == "True",
             what="Ready=True")
    status = kube.binding(namespace, "savers")["status"]
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert kube.condition(namespace, "savers", "Progressing")["status"] == "False"
    # The server writes 0.5 CPU as 500m: that is no hand edit.
    assert not any("changed by hand" in event for event in kube.events(namespace))


def test_changing_topics_patches_the_deployment_and_rolls_the_pods(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.put_secret(namespace, "db", db_url())
    kube.create_binding(namespace, "savers")
    before = wait_for(lambda: kube.deployment(namespace, "savers"), what="Deployment")

    kube.patch_binding(namespace, "savers", {"topics": ["pose", "user"]})

    after = wait_for(lambda: (d := kube.deployment(namespace, "savers"))
                     and env_of(d)["BRAIN_STORM_TOPICS"] == "pose,user" and d,
                     what="new topics")
    assert checksum_of(after) != checksum_of(before)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]


def test_pausing_scales_to_zero_and_says_so(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.put_secret(namespace, "db", db_url())
    kube.create_binding(namespace, "savers", replicas=3)
    before = wait_for(lambda: kube.deployment(namespace, "savers"), what="Deployment")

    kube.patch_binding(namespace, "savers", {"paused": True})

    wait_for(lambda: kube.deployment(namespace, "savers")["spec"]["replicas"] == 0,
             what="replicas 0")
    ready = wait_for(lambda: (c := kube.condition(namespace, "savers", "Ready"))
                     .get("reason") == "Paused" and c, what="Ready reason Paused")
    assert ready["status"] == "False"
    after = kube.deployment(namespace, "savers")
    assert checksum_of(after) == checksum_of(before)  # scaling rolls nothing


def test_the_scale_subresource_scales_the_deployment(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.put_secret(namespace, "db", db_url())
    kube.create_binding(namespace, "savers")
    wait_for(lambda: kube.binding(namespace, "savers").get("status", {}).get("selector"),
             what="status.selector")

    kube.custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "savers", {"spec": {"replicas": 4}},
        _content_type="application/merge-patch+json")

    wait_for(lambda: kube.deployment(namespace, "savers")["spec"]["replicas"] == 4,
             what="4 replicas")
    scale = kube.custom.get_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "savers")
    assert scale["spec"]["replicas"] == 4
    assert "app.kubernetes.io/instance=savers" in scale["status"]["selector"]


def test_a_changed_secret_changes_the_checksum(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.put_secret(namespace, "db", db_url(1))
    kube.create_binding(namespace, "savers")
    before = wait_for(lambda: kube.deployment(namespace, "savers"), what="Deployment")

    kube.put_secret(namespace, "db", db_url(2))

    after = wait_for(lambda: (d := kube.deployment(namespace, "savers"))
                     and checksum_of(d) != checksum_of(before) and d,
                     what="a new checksum")
    assert env_of(after)["BRAIN_STORM_DATABASE_URL"] == env_of(before)[
        "BRAIN_STORM_DATABASE_URL"]


def test_a_deleted_or_hand_edited_deployment_is_repaired(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.put_secret(namespace, "db", db_url())
    kube.create_binding(namespace, "savers")
    first = wait_for(lambda: kube.deployment(namespace, "savers"), what="Deployment")

    kube.apps.delete_namespaced_deployment("savers", namespace)
    second = wait_for(lambda: (d := kube.deployment(namespace, "savers"))
                      and d["metadata"]["uid"] != first["metadata"]["uid"] and d,
                      what="a new Deployment")

    kube.apps.patch_namespaced_deployment("savers", namespace, {"spec": {
        "replicas": 9, "template": {"spec": {"containers": [
            {"name": "saver", "image": "somebody/else:1"}]}}}})
    wait_for(lambda: (d := kube.deployment(namespace, "savers"))
             and d["spec"]["replicas"] == 1
             and d["spec"]["template"]["spec"]["containers"][0]["image"]
             == second["spec"]["template"]["spec"]["containers"][0]["image"],
             what="the hand edit undone")
    assert kube.deployments(namespace) == ["savers"]
    assert any("changed by hand" in event for event in kube.events(namespace))


def test_a_missing_secret_is_reported_and_recovers_once_created(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.create_binding(namespace, "savers")

    ready = wait_for(lambda: kube.condition(namespace, "savers", "Ready"), what="Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound")
    assert kube.condition(namespace, "savers", "Degraded")["status"] == "True"
    assert kube.deployment(namespace, "savers") is None
    wait_for(lambda: any("'db' does not exist" in e for e in kube.events(namespace)),
             what="a warning Event")

    # kopf's own retry waits minutes; the Secret's watch reacts at once.
    kube.put_secret(namespace, "db", db_url())

    wait_for(lambda: kube.deployment(namespace, "savers"), what="Deployment", timeout_s=10)
    wait_for(lambda: kube.condition(namespace, "savers", "Ready")["reason"]
             == "Unavailable", what="the SecretNotFound reason cleared")
    assert kube.condition(namespace, "savers", "Degraded")["status"] == "False"


def test_an_unsupported_scheme_is_reported_until_the_spec_is_fixed(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.create_binding(namespace, "savers", database={"url": "oracle://db/x"})

    ready = wait_for(lambda: kube.condition(namespace, "savers", "Ready"), what="Ready")
    assert ready["reason"] == "UnsupportedScheme"
    assert "oracle://" in ready["message"] and "postgresql://" in ready["message"]

    kube.patch_binding(namespace, "savers",
                       {"database": {"url": "sqlite:////data/brain_storm.sqlite3"}})
    wait_for(lambda: kube.deployment(namespace, "savers"), what="Deployment")
    wait_for(lambda: kube.binding(namespace, "savers")["status"].get("databaseScheme")
             == "sqlite", what="databaseScheme sqlite")


def test_reachability_is_checked_from_the_operator_and_recovers(
    kube: Kube, namespace: str, running: Any
) -> None:
    with listening() as database_port:
        kube.put_secret(namespace, "db", db_url(database_port))
        with socket.socket() as queue:
            queue.bind(("127.0.0.1", 0))
            queue_port = queue.getsockname()[1]  # bound, not listening: refused
            kube.create_binding(namespace, "savers",
                                queue={"url": f"amqp://127.0.0.1:{queue_port}/"})

            wait_for(lambda: kube.condition(namespace, "savers", "QueueReachable")
                     .get("status") == "False", what="QueueReachable=False")
            database = wait_for(lambda: kube.condition(
                namespace, "savers", "DatabaseReachable"), what="DatabaseReachable")
            assert database["status"] == "True"
            assert PASSWORD not in database["message"]

            queue.listen(16)
            wait_for(lambda: kube.condition(namespace, "savers", "QueueReachable")
                     .get("status") == "True", what="QueueReachable=True")


def test_an_idle_binding_causes_no_writes(
    kube: Kube, namespace: str, running: Any
) -> None:
    with listening() as port:
        kube.put_secret(namespace, "db", db_url(port))
        kube.create_binding(namespace, "savers", queue={"url": f"amqp://127.0.0.1:{port}/"})
        wait_for(lambda: kube.condition(namespace, "savers", "QueueReachable")
                 .get("status") == "True", what="reachable")
        time.sleep(1)
        binding = kube.binding(namespace, "savers")
        deployment = kube.deployment(namespace, "savers")

        time.sleep(5)  # probes run every 2 s meanwhile

        assert kube.binding(namespace, "savers")["metadata"]["resourceVersion"] == (
            binding["metadata"]["resourceVersion"])
        assert kube.deployment(namespace, "savers")["metadata"]["resourceVersion"] == (
            deployment["metadata"]["resourceVersion"])


def test_restarting_the_operator_mid_reconcile_keeps_one_deployment(
    kube: Kube, namespace: str
) -> None:
    kube.put_secret(namespace, "db", db_url())

    # Stop the operator at various points of its first reconcile, then let a
    # new one finish the job.
    for number, pause_s in enumerate([0.0, 0.05, 0.3]):
        with operator(namespace):
            kube.create_binding(namespace, f"savers-{number}")
            time.sleep(pause_s)
    with operator(namespace):
        for number in range(3):
            wait_for(lambda n=number: kube.condition(namespace, f"savers-{n}", "Ready"),
                     what=f"savers-{number} reconciled")
        kube.patch_binding(namespace, "savers-0", {"topics": ["user"]})
        wait_for(lambda: env_of(kube.deployment(namespace, "savers-0"))[
            "BRAIN_STORM_TOPICS"] == "user", what="the update")

    assert sorted(kube.deployments(namespace)) == ["savers-0", "savers-1", "savers-2"]


def test_the_command_line_runs_the_operator_and_stops_on_sigterm(
    kube: Kube, namespace: str, control_plane: Path
) -> None:
    kube.put_secret(namespace, "db", db_url())
    environment = {**os.environ, "KUBECONFIG": str(control_plane / "kubeconfig")}
    process = subprocess.Popen(
        [sys.executable, "-m", "brain_storm.operator", "--namespace", namespace],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        kube.create_binding(namespace, "savers")
        wait_for(lambda: kube.condition(namespace, "savers", "Ready"), what="Ready")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)

    assert process.returncode == 0, output
    assert "applied Deployment" in output
    assert PASSWORD not in output


OPERATOR_RULES = [  # docs/operator.md lists these; this test proves they suffice
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]

CLUSTER_RULES = [  # kopf watches these to find resources and namespaces
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]


def test_the_documented_rbac_rules_are_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A control plane of its own, authorising by RBAC; the operator runs as a
    # ServiceAccount bound to OPERATOR_RULES in one namespace.
    folder = tmp_path / "rbac"
    _control_plane("start", str(folder), env={**os.environ, "CONTROL_PLANE_AUTHZ": "RBAC"})
    try:
        admin = Kube(_api_client(folder / "kubeconfig"))
        _install_crd(admin.core.api_client)
        kubeconfig = _operator_identity(admin, folder, "team")
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        admin.put_secret("team", "db", db_url())

        with operator("team") as runner:
            admin.create_binding("team", "savers")
            wait_for(lambda: admin.condition("team", "savers", "Ready"), what="Ready")
            admin.apps.delete_namespaced_deployment("savers", "team")
            wait_for(lambda: admin.deployment("team", "savers"), what="the repair")
            wait_for(lambda: any("deleted" in e for e in admin.events("team")),
                     what="a warning Event")
        assert "Forbidden" not in runner.output and "403" not in runner.output
    finally:
        _control_plane("stop", str(folder), check=False)


def _operator_identity(admin: Kube, folder: Path, namespace: str) -> Path:
    """A kubeconfig for a ServiceAccount allowed OPERATOR_RULES in ``namespace``
    and CLUSTER_RULES everywhere."""
    rbac = client.RbacAuthorizationV1Api(admin.core.api_client)
    admin.core.create_namespace({"metadata": {"name": namespace}})
    admin.core.create_namespaced_service_account(
        namespace, {"metadata": {"name": "operator"}})
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "brain-storm-operator"}, "rules": OPERATOR_RULES})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "brain-storm-operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "brain-storm-operator"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator",
                      "namespace": namespace}]})
    rbac.create_cluster_role({"metadata": {"name": "brain-storm-operator"},
                              "rules": CLUSTER_RULES})
    rbac.create_cluster_role_binding({
        "metadata": {"name": "brain-storm-operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "brain-storm-operator"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator",
                      "namespace": namespace}]})
    token = admin.core.create_namespaced_service_account_token(
        "operator", namespace, {"spec": {"expirationSeconds": 3600}}).status.token

    config = yaml.safe_load((folder / "kubeconfig").read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    path = folder / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_restarted_operator_rewrites_nothing(
    kube: Kube, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    kube.put_secret(namespace, "db", db_url())
    with operator(namespace):
        kube.create_binding(namespace, "savers")
        wait_for(lambda: kube.condition(namespace, "savers", "Ready"), what="Ready")
        time.sleep(1)
    binding = kube.binding(namespace, "savers")["metadata"]["resourceVersion"]
    deployment = kube.deployment(namespace, "savers")["metadata"]["resourceVersion"]

    caplog.clear()
    with operator(namespace):
        wait_for(lambda: "applied Deployment" in caplog.text, what="the resume")
        time.sleep(1)

    assert kube.binding(namespace, "savers")["metadata"]["resourceVersion"] == binding
    assert kube.deployment(namespace, "savers")["metadata"]["resourceVersion"] == (
        deployment)


def test_a_binding_is_deleted_at_once_without_the_operator(
    kube: Kube, namespace: str
) -> None:
    kube.put_secret(namespace, "db", db_url())
    with operator(namespace):
        kube.create_binding(namespace, "savers")
        wait_for(lambda: kube.deployment(namespace, "savers"), what="Deployment")

    # No finalizer: nothing waits for an operator that is gone.
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "savers")
    with pytest.raises(ApiException) as gone:
        kube.binding(namespace, "savers")
    assert gone.value.status == 404


KEDA_STUB_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {"group": "keda.sh", "scope": "Namespaced",
             "names": {"kind": "ScaledObject", "plural": "scaledobjects",
                       "singular": "scaledobject", "listKind": "ScaledObjectList"},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {
                               "type": "object",
                               "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def test_autoscaling_needs_keda_and_then_applies_a_scaled_object(
    kube: Kube, namespace: str, running: Any
) -> None:
    kube.put_secret(namespace, "db", db_url())
    autoscaling = {"minReplicas": 0, "maxReplicas": 5, "messagesPerReplica": 100}
    kube.create_binding(namespace, "savers", autoscaling=autoscaling)

    # No KEDA yet (installing it is for the whole session, so this one test
    # plays both halves): the savers run, and the binding says what is missing.
    wait_for(lambda: kube.condition(namespace, "savers", "Autoscaling")
             .get("reason") == "KedaNotInstalled", what="KedaNotInstalled")
    assert "replicas" in kube.deployment(namespace, "savers")["spec"]

    # A stand-in for KEDA's CRD: the API server stores ScaledObjects, nothing acts.
    # KEDA cannot dial the saver's rabbitmq:// synonym, and the binding says so.
    _install_crd_body(kube, KEDA_STUB_CRD)
    kube.patch_binding(namespace, "savers", {"queue": {"url": "rabbitmq://127.0.0.1:1/"}})
    wait_for(lambda: kube.condition(namespace, "savers", "Autoscaling")
             .get("reason") == "QueueSchemeUnsupported", what="QueueSchemeUnsupported")

    kube.patch_binding(namespace, "savers", {"autoscaling": {"maxReplicas": 6},
                                             "queue": {"url": "amqp://127.0.0.1:1/"}})

    wait_for(lambda: kube.condition(namespace, "savers", "Autoscaling")
             .get("status") == "True", what="Autoscaling=True")
    scaled = kube.custom.get_namespaced_custom_object(
        "keda.sh", "v1alpha1", namespace, "scaledobjects", "savers")
    assert scaled["spec"]["maxReplicaCount"] == 6
    assert scaled["metadata"]["ownerReferences"][0]["kind"] == "SaverBinding"
    assert PASSWORD not in repr(scaled)

    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "savers", [
            {"op": "remove", "path": "/spec/autoscaling"}],
        _content_type="application/json-patch+json")
    wait_for(lambda: kube.condition(namespace, "savers", "Autoscaling")
             .get("reason") == "Disabled", what="Autoscaling Disabled")
    assert not kube.custom.list_namespaced_custom_object(
        "keda.sh", "v1alpha1", namespace, "scaledobjects")["items"]


def _install_crd_body(kube: Kube, body: dict[str, Any]) -> None:
    extensions = client.ApiextensionsV1Api(kube.core.api_client)
    with contextlib.suppress(ApiException):
        extensions.create_custom_resource_definition(body)
    wait_for(lambda: any(
        c.type == "Established" and c.status == "True"
        for c in extensions.read_custom_resource_definition(
            body["metadata"]["name"]).status.conditions or []), what="the CRD")


@pytest.mark.parametrize(("spec", "message"), [
    ({"database": {"url": db_url()}}, "urlFrom.secretKeyRef"),
    ({"queue": {"url": "amqp://127.0.0.1/",
                "urlFrom": {"secretKeyRef": {"name": "q", "key": "url"}}}},
     "exactly one of url or urlFrom"),
    ({"topics": []}, "spec.topics"),
    ({"topics": ["Bad Topic"]}, "spec.topics"),
    ({"replicas": -1}, "spec.replicas"),
    ({"batchSize": 2000, "prefetchCount": 1000}, "batchSize must not exceed"),
])
def test_the_api_server_refuses_bad_specs_with_a_useful_message(
    kube: Kube, namespace: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as refused:
        kube.create_binding(namespace, "bad", **spec)

    assert refused.value.status == 422
    assert message in refused.value.body
    assert PASSWORD not in refused.value.body


def test_unknown_fields_are_pruned(kube: Kube, namespace: str) -> None:
    kube.create_binding(namespace, "pruned", surprise=True,
                        database={"url": "sqlite:////x", "extra": 1})

    spec = kube.binding(namespace, "pruned")["spec"]
    assert "surprise" not in spec
    assert spec["database"] == {"url": "sqlite:////x"}
    assert (spec["replicas"], spec["paused"], spec["batchSize"]) == (1, False, 500)


def test_the_example_is_accepted(kube: Kube, namespace: str) -> None:
    documents = list(yaml.safe_load_all((ROOT / "examples/saverbinding.yaml").read_text()))

    for document in documents:
        if document["kind"] == "Secret":
            kube.core.create_namespaced_secret(namespace, document)
        else:
            kube.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, document)

    binding = kube.binding(namespace, "results")
    assert binding["spec"]["replicas"] == 2
    assert binding["spec"]["database"]["urlFrom"]["secretKeyRef"]["name"] == (
        "brain-storm-database")


# ---- end to end: a harness plays the kubelet ----------------------------------


class Kubelet:
    """Runs a Deployment's saver container as local processes, one per replica.

    The container's command and environment are used as they are, with
    ``secretKeyRef`` values read from the API server, as the kubelet would;
    only ``python`` becomes this interpreter, and each "pod" gets a metrics
    port of its own, since local processes share one network namespace.
    """

    def __init__(self, kube: Kube, namespace: str, logs: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.logs = logs
        self.processes: list[subprocess.Popen] = []
        self.ports: list[int] = []

    def run(self, deployment: dict[str, Any]) -> None:
        spec = deployment["spec"]
        container = spec["template"]["spec"]["containers"][0]
        command = [sys.executable if part == "python" else part
                   for part in container["command"] + container.get("args", [])]
        for replica in range(spec["replicas"]):
            port = _free_port()
            env = {**os.environ, **self._env(container),
                   "BRAIN_STORM_METRICS_HOST": "127.0.0.1",
                   "BRAIN_STORM_METRICS_PORT": str(port)}
            log = open(self.logs / f"pod-{replica}.log", "wb")
            self.processes.append(subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT))
            self.ports.append(port)

    def _env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {}
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = variable["value"]
                continue
            reference = variable["valueFrom"]["secretKeyRef"]
            secret = self.kube.core.read_namespaced_secret(
                reference["name"], self.namespace)
            env[variable["name"]] = base64.b64decode(
                secret.data[reference["key"]]).decode()
        return env

    def ready(self) -> bool:
        return all(_http_status(port, "/readyz") == 200 for port in self.ports)

    def stop(self) -> list[int]:
        for process in self.processes:
            process.terminate()
        return [process.wait(timeout=60) for process in self.processes]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http_status(port: int, path: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_the_example_binding_ends_with_rows_in_postgresql(
    kube: Kube, namespace: str, postgres: Any, rabbitmq: Any, tmp_path: Path,
) -> None:
    # Given the example, its Secrets pointing at a real PostgreSQL and RabbitMQ
    from brain_storm.errors import NotFoundError
    from brain_storm.saver import Saver
    from brain_storm.saver.publish import publish_folder

    database_url = postgres.create_database(f"e2e_{namespace.replace('-', '_')}")
    documents = list(yaml.safe_load_all((ROOT / "examples/saverbinding.yaml").read_text()))
    urls = {"brain-storm-database": database_url, "brain-storm-queue": rabbitmq.url}
    for document in documents:
        if document["kind"] == "Secret":
            document["stringData"]["url"] = urls[document["metadata"]["name"]]
            kube.core.create_namespaced_secret(namespace, document)
        else:
            kube.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, document)
    binding = next(d for d in documents if d["kind"] == "SaverBinding")
    name = binding["metadata"]["name"]

    # When the operator makes its Deployment, and a kubelet runs its pods
    kubelet = Kubelet(kube, namespace, tmp_path)
    with operator(namespace):
        deployment = wait_for(lambda: kube.deployment(namespace, name), timeout_s=60,
                              what="the Deployment")
        kubelet.run(deployment)
        try:
            wait_for(kubelet.ready, timeout_s=60, what="the savers to be ready")
            # And the example messages are published as parsers would
            published = publish_folder(rabbitmq.url, ROOT / "examples/messages",
                                       exchange=binding["spec"]["queue"]["exchange"])

            # Then every message ends as rows in PostgreSQL, read back by the API
            with Saver(database_url) as saver:

                def all_saved() -> bool:
                    try:
                        snapshot = saver.get_one_snapshot(42, 1575446887339)
                        return len(snapshot["results"]) == 4 and len(
                            saver.get_snapshots(42)) == 2
                    except NotFoundError:
                        return False

                wait_for(all_saved, timeout_s=60, what="the example rows")
                assert saver.get_one_user(42)["username"] == "Dan Gittik"
                assert saver.get_result(42, 1575446887339, "feelings")["thirst"] == 0.5
        finally:
            statuses = kubelet.stop()
    assert published == 9
    assert statuses == [0] * binding["spec"]["replicas"]
    for log in tmp_path.glob("pod-*.log"):
        assert PASSWORD not in log.read_text()

"""The Helm chart (deploy/helm/brain-storm-saver) with real tools.

helm is built from the Go module proxy once (scripts/build-helm) and cached.
It lints the chart strictly and renders it with several value sets; its
values schema must refuse typos.  Every rendered object is then created with
``dryRun=All`` and strict field validation on a real kube-apiserver
(scripts/control-plane.sh, authorising by RBAC, with the
OwnerReferencesPermissionEnforcement admission plugin so that
``blockOwnerDeletion`` needs its rule), the chart is installed, upgraded and
uninstalled for real, and the operator runs on this machine as the chart's
ServiceAccount (a token from the TokenRequest API), with the arguments and
environment of the chart's Deployment, through a full reconcile cycle.
Finally each granted rule is removed in turn, and the same cycle must fail.

There is no kubelet: the operator's pod never runs in the cluster, so its
probes and security context are checked as manifests only (and by dry-run).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import urllib3

kubernetes = pytest.importorskip("kubernetes")
yaml = pytest.importorskip("yaml")

from kubernetes import client  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

ROOT = Path(__file__).parent.parent
CHART = ROOT / "deploy/helm/brain-storm-saver"
CONTROL_PLANE = ROOT / "scripts/control-plane.sh"
GROUP, VERSION, PLURAL = "brain-storm.io", "v1alpha1", "saverbindings"
# What the operator's log shows when the API server refuses it something.
REFUSALS = re.compile(
    r"forbidden|\b403\b|not enough permissions|failed to post an event", re.IGNORECASE)
T = TypeVar("T")

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaces": {"operator": {"watchNamespaces": ["team-a", "team-b"]}},
    "everything": {
        "fullnameOverride": "bs",
        "image": {"repository": "registry.example/brain-storm", "tag": "0.1.0-rc1",
                  "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "saverImage": "registry.example/brain-storm:saver",
        "operator": {
            "watchNamespaces": ["team-a"], "verbose": True,
            "probeIntervalSeconds": 15, "healthPort": 9000,
            "resources": {"requests": {"cpu": "100m", "memory": "200Mi"},
                          "limits": {"cpu": 1, "memory": "1Gi"}},
            "podAnnotations": {"example.org/note": "x"},
            "podLabels": {"team": "a"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal",
                             "value": "ops", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
        },
        "serviceAccount": {"annotations": {"example.org/identity": "saver"}},
        "rbac": {"keda": False},
        "metrics": {"podMonitor": {"enabled": True, "interval": "15s",
                                   "labels": {"release": "prometheus"}}},
    },
    "stopped-external-identity": {
        "operator": {"replicaCount": 0},
        "serviceAccount": {"create": False, "name": "existing"},
        "rbac": {"create": False},
    },
}

TYPOS = [
    "operator.replicaCont=1",      # misspelt
    "replicaCount=1",              # at the wrong level
    "image.tagg=x",
    "operator.resources.requests.cpus=1",
    "metrics.podMonitor.enable=true",
    "rbac.kedaa=false",
    "operator.watchNamespaces[0]=Team_A",  # not a namespace name
    "operator.replicaCount=2",     # two active operators
]


# ---- helm -------------------------------------------------------------------

@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    built = subprocess.run([str(ROOT / "scripts/build-helm")], check=True,
                           capture_output=True, text=True)
    home = tmp_path_factory.mktemp("helm-home")
    return Helm(Path(built.stdout.strip().splitlines()[-1]), home)


class Helm:
    """The helm binary, with its config and cache kept out of $HOME."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data")}
        self.values_dir = home

    def run(self, *arguments: str, check: bool = True,
            kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        result = subprocess.run([str(self.binary), *arguments], env=env,
                                capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(arguments)}:\n{result.stderr}")
        return result

    def values_file(self, values: dict[str, Any]) -> str:
        path = self.values_dir / f"values-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(yaml.safe_dump(values))
        return str(path)

    def template(self, values: dict[str, Any], *, release: str = "rel",
                 namespace: str = "brain-storm") -> list[dict[str, Any]]:
        result = self.run("template", release, str(CHART), "--namespace", namespace,
                          "-f", self.values_file(values))
        return [document for document in yaml.safe_load_all(result.stdout) if document]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in objects if item["kind"] == kind]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = by_kind(objects, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


# ---- the chart's files --------------------------------------------------------

def test_the_charts_crds_are_generated_from_deploy_crds() -> None:
    result = subprocess.run([str(ROOT / "scripts/sync-chart-crds"), "--check"],
                            capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr
    sources = sorted(p.name for p in (ROOT / "deploy/crds").glob("*.yaml"))
    assert sources == sorted(p.name for p in (CHART / "crds").glob("*.yaml"))


def test_every_values_key_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    uncommented = [line for number, line in enumerate(lines)
                   if re.match(r"\s*[A-Za-z][\w.-]*:", line)
                   and not lines[number - 1].lstrip().startswith("#")]

    assert uncommented == []


def test_the_schema_refuses_unknown_keys_at_every_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, path
            assert set(value) <= set(node["properties"]), path
            for key, child in node["properties"].items():
                walk(child, value.get(key, {}) if isinstance(value, dict) else {},
                     f"{path}.{key}")
        elif node.get("type") == "object":
            # A free map (labels, annotations, nodeSelector): keys are the
            # user's own, so its values are typed instead.
            assert isinstance(node.get("additionalProperties"), dict), path
        elif node.get("type") == "array" and isinstance(node["items"], dict):
            walk(node["items"], {}, f"{path}[]")

    walk(schema, values, "")
    assert set(values) == set(schema["properties"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict_passes(helm: Helm, name: str) -> None:
    result = helm.run("lint", "--strict", str(CHART), "-f",
                      helm.values_file(VALUE_SETS[name]))

    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("typo", TYPOS)
def test_a_typo_in_the_values_fails_schema_validation(helm: Helm, typo: str) -> None:
    result = helm.run("template", "rel", str(CHART), "--set", typo, check=False)

    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    linted = helm.run("lint", "--strict", str(CHART), "--set", typo, check=False)
    assert linted.returncode != 0


def test_the_default_values_watch_the_whole_cluster(helm: Helm) -> None:
    objects = helm.template({})

    kinds = sorted(item["kind"] for item in objects)
    assert kinds == ["ClusterRole", "ClusterRole", "ClusterRoleBinding",
                     "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    container = operator_container(objects)
    assert container["command"] == ["python", "-m", "brain_storm.operator"]
    assert not [a for a in container["args"] if a.startswith("--namespace")]
    discovery = {rule["resources"][0] for role in by_kind(objects, "ClusterRole")
                 if role["metadata"]["name"].endswith("-discovery")
                 for rule in role["rules"]}
    assert discovery == {"customresourcedefinitions"}  # clusterwide: no namespaces


def test_a_namespace_list_gives_a_role_and_a_flag_per_namespace(helm: Helm) -> None:
    objects = helm.template(VALUE_SETS["namespaces"])

    roles = {item["metadata"]["namespace"] for item in by_kind(objects, "Role")}
    bindings = {item["metadata"]["namespace"]
                for item in by_kind(objects, "RoleBinding")}
    assert roles == bindings == {"team-a", "team-b"}
    assert [role["metadata"]["name"] for role in by_kind(objects, "ClusterRole")] == [
        "rel-brain-storm-saver-discovery"]
    args = operator_container(objects)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a", "--namespace=team-b"]


def test_the_operator_runs_once_locked_down(helm: Helm) -> None:
    objects = helm.template(VALUE_SETS["everything"])

    [deployment] = by_kind(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = operator_container(objects)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"] == "1Gi"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--liveness=http://0.0.0.0:9000/healthz" in container["args"]
    assert container["image"] == "registry.example/brain-storm:0.1.0-rc1"
    [monitor] = by_kind(objects, "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    assert not [rule for role in by_kind(objects, "Role") for rule in role["rules"]
                if "keda.sh" in rule["apiGroups"]]


# ---- against a real kube-apiserver ----------------------------------------------

@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """etcd + kube-apiserver authorising by RBAC; yields the folder of its env."""
    folder = tmp_path_factory.mktemp("chart-control-plane")
    env = {**os.environ, "CONTROL_PLANE_AUTHZ": "RBAC",
           "CONTROL_PLANE_EXTRA_ARGS":
               "--enable-admission-plugins=OwnerReferencesPermissionEnforcement"}
    subprocess.run([str(CONTROL_PLANE), "build"], check=True, capture_output=True)
    subprocess.run([str(CONTROL_PLANE), "start", str(folder)], check=True,
                   capture_output=True, env=env)
    try:
        admin = Admin(folder)
        admin.install_crd(KEDA_STUB_CRD)
        admin.install_crd(PODMONITOR_STUB_CRD)
        yield folder
    finally:
        subprocess.run([str(CONTROL_PLANE), "stop", str(folder)], check=False,
                       capture_output=True)


@pytest.fixture
def admin(cluster: Path) -> Admin:
    return Admin(cluster)


class Admin:
    """The tests' own API calls, as the control plane's admin."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.kubeconfig = folder / "kubeconfig"
        self.api = kubernetes.config.new_client_from_config(
            config_file=str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.extensions = client.ApiextensionsV1Api(self.api)

    def namespace(self, name: str) -> str:
        with contextlib.suppress(ApiException):
            self.core.create_namespace({"metadata": {"name": name}})
        return name

    def install_crd(self, body: dict[str, Any]) -> None:
        with contextlib.suppress(ApiException):
            self.extensions.create_custom_resource_definition(body)
        wait_for(lambda: any(
            c.type == "Established" and c.status == "True"
            for c in self.extensions.read_custom_resource_definition(
                body["metadata"]["name"]).status.conditions or []), what="a CRD")

    def dry_run_create(self, body: dict[str, Any]) -> str | None:
        """POST ``body`` with dryRun=All and strict field validation, over
        plain HTTPS with the admin token; returns the refusal, if any."""
        group_version = body["apiVersion"]
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        plural, namespaced = KINDS[body["kind"]]
        namespace = body["metadata"].get("namespace")
        path = (f"{prefix}/namespaces/{namespace}/{plural}" if namespaced
                else f"{prefix}/{plural}")
        server = yaml.safe_load(self.kubeconfig.read_text())["clusters"][0][
            "cluster"]["server"]
        token = (self.folder / "pki/admin.token").read_text().strip()
        http = urllib3.PoolManager(ca_certs=str(self.folder / "pki/ca.crt"))
        response = http.request(
            "POST", f"{server}{path}?dryRun=All&fieldValidation=Strict",
            body=json.dumps(body).encode(), timeout=30,
            headers={"Authorization": f"Bearer {token}",
                     "Content-Type": "application/json"})
        return None if response.status == 201 else response.data.decode()

    def token_kubeconfig(self, namespace: str, account: str, path: Path) -> Path:
        """A kubeconfig for a ServiceAccount, by the TokenRequest API."""
        token = self.core.create_namespaced_service_account_token(
            account, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [{"name": "admin", "user": {"token": token}}]
        path.write_text(yaml.safe_dump(config))
        return path

    def put_secret(self, namespace: str, name: str, url: str) -> None:
        self.core.create_namespaced_secret(namespace, {
            "metadata": {"name": name},
            "data": {"url": base64.b64encode(url.encode()).decode()}})

    def binding(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any]:
        status = (self.binding(namespace, name) or {}).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == kind),
                    {})

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self.apps.read_namespaced_deployment(
                name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return json.loads(response.data)

    def scaled_objects(self, namespace: str) -> list[str]:
        items = self.custom.list_namespaced_custom_object(
            "keda.sh", "v1alpha1", namespace, "scaledobjects")["items"]
        return [item["metadata"]["name"] for item in items]

    def events(self, namespace: str) -> list[str]:
        return [f"{e.reason}: {e.message}"
                for e in self.core.list_namespaced_event(namespace).items]


KINDS = {  # kind: (plural, namespaced), for the dry-run requests
    "ServiceAccount": ("serviceaccounts", True),
    "Deployment": ("deployments", True),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "PodMonitor": ("podmonitors", True),
}


def _stub_crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    """A CRD that stores anything: the real one is not at hand offline."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                           "listKind": f"{kind}List"},
                 "versions": [{"name": "v1" if group.startswith("monitoring")
                               else "v1alpha1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


KEDA_STUB_CRD = _stub_crd("keda.sh", "ScaledObject", "scaledobjects")
PODMONITOR_STUB_CRD = _stub_crd("monitoring.coreos.com", "PodMonitor", "podmonitors")


def wait_for(probe: Callable[[], T], *, timeout_s: float = 30, what: str = "") -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_object_passes_a_server_side_dry_run(
    helm: Helm, admin: Admin, name: str
) -> None:
    namespace = admin.namespace(unique("dry"))
    for watched in VALUE_SETS[name].get("operator", {}).get("watchNamespaces", []):
        admin.namespace(watched)
    objects = helm.template(VALUE_SETS[name], release=unique("r"), namespace=namespace)

    refused = {f"{body['kind']}/{body['metadata']['name']}": refusal
               for body in objects if (refusal := admin.dry_run_create(body))}
    assert refused == {}
    assert objects


def test_the_dry_run_refuses_what_kubernetes_would(helm: Helm, admin: Admin) -> None:
    namespace = admin.namespace(unique("dry"))
    [deployment] = by_kind(helm.template({}, namespace=namespace), "Deployment")

    deployment["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": 1}  # not Recreate
    deployment["spec"]["template"]["spec"]["securityContext"]["runAsUsr"] = 1

    refusal = admin.dry_run_create(deployment)
    assert refusal and "runAsUsr" in refusal


def test_install_upgrade_and_uninstall_for_real(helm: Helm, admin: Admin) -> None:
    namespace, release = unique("brain-storm"), unique("saver")
    kubeconfig = admin.kubeconfig

    helm.run("install", release, str(CHART), "--namespace", namespace,
             "--create-namespace", "--wait=false", kubeconfig=kubeconfig)

    fullname = f"{release}-brain-storm-saver"
    assert admin.apps.read_namespaced_deployment(fullname, namespace)
    assert admin.core.read_namespaced_service_account(fullname, namespace)
    assert admin.rbac.read_cluster_role(fullname)
    assert admin.rbac.read_cluster_role_binding(f"{fullname}-discovery")
    assert admin.extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")

    # Upgrade to serving one namespace: the cluster-wide grant goes.
    team = admin.namespace(unique("team"))
    helm.run("upgrade", release, str(CHART), "--namespace", namespace, "--set",
             f"operator.watchNamespaces={{{team}}}", kubeconfig=kubeconfig)
    assert admin.rbac.read_namespaced_role(fullname, team)
    with pytest.raises(ApiException):
        admin.rbac.read_cluster_role(fullname)
    args = admin.apps.read_namespaced_deployment(
        fullname, namespace).spec.template.spec.containers[0].args
    assert f"--namespace={team}" in args

    helm.run("uninstall", release, "--namespace", namespace, kubeconfig=kubeconfig)
    assert not admin.apps.list_namespaced_deployment(namespace).items
    with pytest.raises(ApiException):
        admin.rbac.read_namespaced_role(fullname, team)
    # Helm leaves CRDs alone on uninstall, so bindings survive it.
    assert admin.extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")


# ---- the operator as the chart's ServiceAccount ---------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def chart_operator(container: dict[str, Any], kubeconfig: Path,
                   log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The operator on this machine, started as the chart's container would be:
    its command, arguments and environment (the liveness endpoint on loopback)."""
    command = [sys.executable if word == "python" else word
               for word in container["command"]]
    arguments = [re.sub(r"^--liveness=.*",
                        f"--liveness=http://127.0.0.1:{free_port()}/healthz", word)
                 for word in container["args"]]
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("KUBERNETES_")}
    env.update({item["name"]: item["value"] for item in container["env"]})
    env.update({"KUBECONFIG": str(kubeconfig),
                "BRAIN_STORM_OPERATOR_PROBE_INTERVAL_S": "2",
                "BRAIN_STORM_OPERATOR_PROBE_RETRY_S": "0.5",
                "BRAIN_STORM_OPERATOR_PROBE_TIMEOUT_S": "1"})
    with log.open("wb") as output:
        process = subprocess.Popen([*command, *arguments], env=env, cwd=ROOT,
                                   stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def reconcile_cycle(admin: Admin, namespace: str, *, timeout_s: float) -> None:
    """Create, update, repair and delete a binding; each step must take effect."""
    def wait(probe: Callable[[], Any], what: str) -> Any:
        return wait_for(probe, timeout_s=timeout_s, what=what)

    admin.put_secret(namespace, "db", "postgresql://saver:pw@127.0.0.1:1/brain_storm")
    admin.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SaverBinding",
        "metadata": {"name": "savers"},
        "spec": {"database": {"urlFrom": {"secretKeyRef": {"name": "db",
                                                           "key": "url"}}},
                 "queue": {"url": "amqp://127.0.0.1:1/"}, "topics": ["pose"],
                 "autoscaling": {"maxReplicas": 3}}})
    first = wait(lambda: admin.deployment(namespace, "savers"), "the Deployment")
    wait(lambda: admin.condition(namespace, "savers", "Ready"), "Ready")
    wait(lambda: admin.scaled_objects(namespace) == ["savers"], "the ScaledObject")

    # Update: new topics reach the Deployment.
    admin.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "savers", {"spec": {"topics": ["user"]}})
    wait(lambda: "user" in json.dumps(admin.deployment(namespace, "savers")),
         "the new topics")

    # Repair: a deleted Deployment comes back, with a warning Event.
    admin.apps.delete_namespaced_deployment("savers", namespace)
    wait(lambda: (d := admin.deployment(namespace, "savers"))
         and d["metadata"]["uid"] != first["metadata"]["uid"], "the repair")
    wait(lambda: any("deleted" in event for event in admin.events(namespace)),
         "a warning Event")

    # Autoscaling off: the ScaledObject goes; then the binding itself.
    admin.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "savers",
        [{"op": "remove", "path": "/spec/autoscaling"}],
        _content_type="application/json-patch+json")
    wait(lambda: admin.scaled_objects(namespace) == [], "the ScaledObject's deletion")
    admin.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                 "savers")
    wait(lambda: admin.binding(namespace, "savers") is None, "the deletion")


def install_and_identify(helm: Helm, admin: Admin, values: dict[str, Any],
                         release: str, namespace: str,
                         post_renderer: list[str] | None = None,
                         ) -> tuple[dict[str, Any], Path]:
    """helm install; returns the operator's container and its identity."""
    extra = []
    if post_renderer:
        extra = ["--post-renderer", post_renderer[0]]
        for argument in post_renderer[1:]:
            extra += ["--post-renderer-args", argument]
    helm.run("install", release, str(CHART), "--namespace", namespace,
             "-f", helm.values_file(values), *extra, kubeconfig=admin.kubeconfig)
    fullname = f"{release}-brain-storm-saver"
    deployment = admin.apps.read_namespaced_deployment(
        fullname, namespace, _preload_content=False)
    [container] = json.loads(deployment.data)["spec"]["template"]["spec"]["containers"]
    kubeconfig = admin.token_kubeconfig(
        namespace, fullname, admin.folder / f"{release}.kubeconfig")
    return container, kubeconfig


@pytest.mark.parametrize("mode", ["cluster", "namespaces"])
def test_the_operator_reconciles_as_the_charts_service_account(
    helm: Helm, admin: Admin, tmp_path: Path, mode: str
) -> None:
    release = unique("op")
    namespace = admin.namespace(release)
    team = admin.namespace(unique("team"))
    values = {"operator": {"watchNamespaces": [team]}} if mode == "namespaces" else {}
    container, kubeconfig = install_and_identify(helm, admin, values, release,
                                                 namespace)

    log = tmp_path / "operator.log"
    with chart_operator(container, kubeconfig, log):
        try:
            reconcile_cycle(admin, team, timeout_s=30)
        except AssertionError as error:
            raise AssertionError(f"{error}; the operator's log:\n"
                                 f"{log.read_text()[-4000:]}") from None

    output = log.read_text()
    assert "applied Deployment" in output
    assert not REFUSALS.findall(output), output


def _granted_rules(helm: Helm) -> list[tuple[str, int, dict[str, Any]]]:
    """(kind, index, rule) of every rule the namespaced install grants."""
    objects = helm.template({"operator": {"watchNamespaces": ["x"]}})
    return [(role["kind"], index, rule)
            for kind in ("Role", "ClusterRole") for role in by_kind(objects, kind)
            for index, rule in enumerate(role["rules"])]


DROP_RULE = """\
import sys, yaml
kind, index = sys.argv[1], int(sys.argv[2])
documents = [d for d in yaml.safe_load_all(sys.stdin) if d]
for document in documents:
    if document["kind"] == kind:
        removed = document["rules"].pop(index)
        print("# removed", removed, file=sys.stderr)
sys.stdout.write(yaml.safe_dump_all(documents))
"""

RULE_COUNT = 9  # 7 in the Role (KEDA included), 2 in the discovery ClusterRole


def test_the_rule_count_is_what_the_removal_test_covers(helm: Helm) -> None:
    assert len(_granted_rules(helm)) == RULE_COUNT


@pytest.mark.parametrize("rule", range(RULE_COUNT))
def test_removing_any_granted_rule_breaks_the_cycle(
    helm: Helm, admin: Admin, tmp_path: Path, rule: int
) -> None:
    kind, index, granted = _granted_rules(helm)[rule]
    script = tmp_path / "drop-rule"
    script.write_text(f"#!{sys.executable}\n{DROP_RULE}")
    script.chmod(0o755)
    release = unique("rm")
    namespace = admin.namespace(release)
    team = admin.namespace(unique("team"))
    values = {"operator": {"watchNamespaces": [team]}}
    container, kubeconfig = install_and_identify(
        helm, admin, values, release, namespace,
        post_renderer=[str(script), kind, str(index)])

    log = tmp_path / "operator.log"
    with chart_operator(container, kubeconfig, log):
        try:
            reconcile_cycle(admin, team, timeout_s=10)
            completed = True
        except AssertionError:
            completed = False

    # The API server refused the operator something, and the cycle failed;
    # only without the CRD watch does it complete (the CRD was there at start,
    # so kopf merely warns that it cannot notice CRD changes).
    refusals = REFUSALS.findall(log.read_text())
    assert refusals, f"without {granted} nothing was refused"
    crd_watch = granted["resources"] == ["customresourcedefinitions"]
    assert crd_watch or not completed, f"without {granted} all worked"


# ---- scripts ------------------------------------------------------------------------

def shell_scripts() -> list[Path]:
    """Every shell script in scripts/ (by its #! line; others are skipped)."""
    return sorted(path for path in (ROOT / "scripts").iterdir() if path.is_file()
                  and re.match(r"#!.*\b(ba)?sh\b", path.read_text().split("\n")[0]))


def test_the_kind_script_is_among_the_shell_scripts() -> None:
    names = {path.name for path in shell_scripts()}

    assert {"kind-e2e.sh", "build-helm", "sync-chart-crds", "install-deps"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda path: path.name)
def test_shellcheck_finds_nothing(script: Path) -> None:
    result = subprocess.run(["shellcheck", "--format=gcc", str(script)],
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr

"""How the operator copes with many bindings, on a local control plane.

    python bench/operator_bench.py [--bindings 300] [--idle-s 60]

Starts etcd + kube-apiserver (scripts/control-plane.sh, on 127.0.0.1) and
the operator as a subprocess, creates N SaverBindings in one namespace, and
reports:

- the time until every binding has its Deployment and a Ready condition;
- the time until every binding is Ready=True once the bench has played the
  Deployment controller (there is none) by writing each Deployment's status;
- the operator's peak RSS (VmHWM);
- API requests per idle binding per minute: the kube-apiserver's
  ``apiserver_request_total`` for the operator's resources, WATCH excepted,
  counted over
  ``--idle-s`` seconds in which the bench itself sends nothing.

Every URL points at a port this bench listens on, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes import client

ROOT = Path(__file__).parent.parent
GROUP, VERSION, PLURAL = "brain-storm.io", "v1alpha1", "saverbindings"
NAMESPACE = "bench"
RESOURCES = re.compile(r'resource="(saverbindings|deployments|secrets|events)"')
"""What the operator reads and writes; the API server's own loopback traffic
(leases, discovery) is left out."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", type=int, default=300)
    parser.add_argument("--idle-s", type=float, default=60.0)
    arguments = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="brain-storm-operator-bench-"))
    control_plane = str(ROOT / "scripts/control-plane.sh")
    subprocess.run([control_plane, "start", str(folder)], check=True)
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    threading.Thread(target=accept_forever, args=(listener,), daemon=True).start()
    try:
        report = run(folder, listener.getsockname()[1], arguments)
    finally:
        listener.close()
        subprocess.run([control_plane, "stop", str(folder)], check=False)
    print(json.dumps(report, indent=2))
    return 0


def run(folder: Path, port: int, arguments: argparse.Namespace) -> dict[str, Any]:
    api = kubernetes.config.new_client_from_config(config_file=str(folder / "kubeconfig"))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)
    install_crd(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    url = f"postgresql://saver:bench-password@127.0.0.1:{port}/x"
    core.create_namespaced_secret(NAMESPACE, {
        "metadata": {"name": "db"},
        "data": {"url": base64.b64encode(url.encode()).decode()}})

    environment = {**os.environ, "KUBECONFIG": str(folder / "kubeconfig")}
    operator = subprocess.Popen(
        [sys.executable, "-m", "brain_storm.operator", "-n", NAMESPACE],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return measure(folder, port, arguments, operator.pid, apps, custom)
    finally:
        operator.terminate()
        operator.wait(timeout=30)


def measure(folder: Path, port: int, arguments: argparse.Namespace, pid: int,
            apps: client.AppsV1Api, custom: client.CustomObjectsApi) -> dict[str, Any]:
    names = [f"savers-{number:04d}" for number in range(arguments.bindings)]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: create(custom, name, port), names))
    created_s = time.monotonic() - started

    wait(lambda: len(apps.list_namespaced_deployment(NAMESPACE).items) == len(names))
    wait(lambda: all(ready(item) is not None for item in bindings(custom)))
    deployed_s = time.monotonic() - started

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: play_controller(apps, name), names))
    wait(lambda: all(ready(item) == "True" for item in bindings(custom)))
    ready_s = time.monotonic() - started

    time.sleep(5)  # let the last status writes and probes settle
    before = requests_so_far(folder)
    time.sleep(arguments.idle_s)
    after = requests_so_far(folder)
    idle = {key: after[key] - before.get(key, 0) for key in after
            if after[key] - before.get(key, 0)}
    per_minute = sum(idle.values()) / len(names) / (arguments.idle_s / 60)
    return {
        "bindings": len(names),
        "create_s": round(created_s, 1),
        "all_deployments_and_conditions_s": round(deployed_s, 1),
        "all_ready_true_s": round(ready_s, 1),
        "operator_peak_rss_mib": round(peak_rss_kib(pid) / 1024, 1),
        "idle_requests_per_binding_per_minute": round(per_minute, 3),
        "idle_requests_by_verb_and_resource": idle,
    }


def accept_forever(listener: socket.socket) -> None:
    """Stand in for the database and the broker: accept, then hang up."""
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        connection.close()


def install_crd(api: client.ApiClient) -> None:
    crd = yaml.safe_load((ROOT / "deploy/crds/brain-storm.io_saverbindings.yaml").read_text())
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(crd)
    wait(lambda: any(c.type == "Established" for c in (
        extensions.read_custom_resource_definition(crd["metadata"]["name"])
        .status.conditions or [])))


def create(custom: client.CustomObjectsApi, name: str, port: int) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SaverBinding",
        "metadata": {"name": name},
        "spec": {"database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                 "queue": {"url": f"amqp://127.0.0.1:{port}/"},
                 "topics": ["pose"]},
    })


def bindings(custom: client.CustomObjectsApi) -> list[dict[str, Any]]:
    return custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]


def ready(binding: dict[str, Any]) -> str | None:
    for entry in (binding.get("status") or {}).get("conditions") or []:
        if entry["type"] == "Ready":
            return entry["status"]
    return None


def play_controller(apps: client.AppsV1Api, name: str) -> None:
    """Write what the Deployment controller would once the pod is up."""
    deployment = apps.read_namespaced_deployment(name, NAMESPACE)
    apps.patch_namespaced_deployment_status(name, NAMESPACE, {"status": {
        "observedGeneration": deployment.metadata.generation, "replicas": 1,
        "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}})


def requests_so_far(folder: Path) -> dict[str, float]:
    """Non-WATCH requests the kube-apiserver has served, by its own metrics."""
    environment = dict(re.findall(r"export (\w+)=(\S+)", (folder / "env").read_text()))
    context = ssl.create_default_context(cafile=environment["CONTROL_PLANE_CA"])
    request = urllib.request.Request(
        environment["CONTROL_PLANE_URL"] + "/metrics",
        headers={"Authorization": f"Bearer {environment['CONTROL_PLANE_TOKEN']}"})
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        resource = RESOURCES.search(line)
        if (line.startswith("apiserver_request_total{")
                and 'verb="WATCH"' not in line and resource):
            verb = re.search(r'verb="(\w+)"', line).group(1)
            key = f"{verb} {resource.group(1)}"
            totals[key] = totals.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return totals


def peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))


def wait(condition: Any, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the operator did not get there in time")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())

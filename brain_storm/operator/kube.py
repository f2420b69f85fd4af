"""The few Kubernetes API calls the handlers make, on plain dicts.

kopf watches and posts events itself; this is the one place that writes:
Deployments by server-side apply (create-or-patch under one field manager,
so a restarted operator patches the Deployment it made instead of making a
second one), and the binding's status by merge patch.  Calls are blocking,
which suits kopf's synchronous handlers (they run in a thread pool); the
reachability loop calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from brain_storm.operator.manifests import GROUP, MANAGER, PLURAL, VERSION

REQUEST_TIMEOUT_S = 30


class Kube:
    """Blocking API calls returning the server's JSON as dicts."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @classmethod
    def from_environment(cls) -> Kube:
        """In a pod, its service account; elsewhere, $KUBECONFIG or ~/.kube/config."""
        configuration = client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            # $KUBECONFIG is read now, not when the client library was imported.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                                    client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    def apply_deployment(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create or patch a Deployment to match ``manifest`` (server-side apply)."""
        metadata = manifest["metadata"]
        response = self.apps.patch_namespaced_deployment(
            metadata["name"], metadata["namespace"], manifest,
            field_manager=MANAGER, force=True,
            _content_type="application/apply-patch+yaml",
            _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S,
        )
        return json.loads(response.data)

    def apply_scaled_object(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create or patch a KEDA ScaledObject; None when KEDA is not installed."""
        metadata = manifest["metadata"]
        return _or_none(lambda: self.custom.patch_namespaced_custom_object(
            "keda.sh", "v1alpha1", metadata["namespace"], "scaledobjects",
            metadata["name"], manifest, field_manager=MANAGER, force=True,
            _content_type="application/apply-patch+yaml",
            _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))

    def delete_scaled_object(self, namespace: str, name: str) -> None:
        """Delete a ScaledObject; gone already, or no KEDA, is fine."""
        _or_none(lambda: self.custom.delete_namespaced_custom_object(
            "keda.sh", "v1alpha1", namespace, "scaledobjects", name,
            _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _or_none(lambda: self.apps.read_namespaced_deployment(
            name, namespace, _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT_S))

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _or_none(lambda: self.core.read_namespaced_secret(
            name, namespace, _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT_S))

    def patch_binding_status(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge ``patch`` into a binding's status; None when it is gone."""
        return _or_none(lambda: self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": patch},
            _content_type="application/merge-patch+json",
            _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))


def _or_none(call: Any) -> dict[str, Any] | None:
    try:
        return json.loads(call().data)
    except ApiException as error:
        if error.status == 404:
            return None
        raise

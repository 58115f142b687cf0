"""deploy/kubernetes: every manifest validates against the Kubernetes schemas
(kubernetes-validate --strict: unknown fields are errors), and the probes point at what
lockd serves. The policy check (checkov) is tests/deploy/test_policy.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import DEPLOY, run, tool

KUBERNETES = DEPLOY / "kubernetes"
MANIFESTS = sorted(KUBERNETES.glob("*.yaml"))


def _documents() -> Iterator[dict[str, Any]]:
    for manifest in MANIFESTS:
        for document in yaml.safe_load_all(manifest.read_text()):
            if document:
                yield document


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for document in _documents():
        if document["kind"] in ("StatefulSet", "DaemonSet", "Deployment"):
            yield document["metadata"]["name"], document["spec"]["template"]["spec"]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_the_manifest_validates_against_the_kubernetes_schemas(manifest: Path) -> None:
    """kubernetes-validate --strict accepts every resource in the file."""
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", str(manifest)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_lockd_resource_is_in_a_lockd_namespace() -> None:
    """Nothing lands in `default`: namespaced resources name lockd or lockd-node."""
    for document in _documents():
        if document["kind"] != "Namespace":
            assert document["metadata"].get("namespace") in ("lockd", "lockd-node"), document


def test_probes_ask_the_plain_http_health_endpoints_on_the_metrics_port() -> None:
    """Readiness asks /readyz and liveness /healthz on a container port named metrics,
    which the config in the same manifest binds on all addresses (kubelet dials the pod
    IP, without a client certificate)."""
    specs = dict(_pod_specs())
    assert {"lockd-auth", "lockd-agent"} <= set(specs)
    configs = "\n".join(
        text
        for document in _documents()
        if document["kind"] in ("ConfigMap", "Secret")
        for text in {**document.get("data", {}), **document.get("stringData", {})}.values()
    )
    for name, spec in specs.items():
        (container,) = spec["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert f"metrics_addr: 0.0.0.0:{ports['metrics']}" in configs, name


def test_containers_run_restricted() -> None:
    """Non-root, no privilege escalation, read-only root, all capabilities dropped,
    resource limits; init containers drop every capability, except that the agent's
    (root) keeps CHOWN and FOWNER."""
    for name, spec in _pod_specs():
        for container in spec["containers"]:
            context = container["securityContext"]
            pod_context = spec.get("securityContext", {})
            assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, name
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        for init in spec.get("initContainers", []):
            assert init["securityContext"]["capabilities"] in (
                {"drop": ["ALL"]},
                {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]},
            )


def test_the_agent_gets_its_join_secret_and_shares_its_socket_directory() -> None:
    """The DaemonSet mounts the Secret holding agent.yaml, and /run/lockd from the node."""
    spec = dict(_pod_specs())["lockd-agent"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    secrets = {
        document["metadata"]["name"] for document in _documents() if document["kind"] == "Secret"
    }
    assert volumes["config"]["secret"]["secretName"] in secrets
    assert volumes["run"]["hostPath"]["path"] == "/run/lockd"

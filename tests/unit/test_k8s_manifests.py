"""deploy/: every overlay renders, every core object validates against the Kubernetes
schemas (offline), and the deployment policies hold. Needs kubectl (kustomize built in):
with CI=true a missing kubectl fails the run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import IN_CI, REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "prod", "hpa", "rabbitmq-cluster"]
KUBERNETES_VERSION = "1.30.0"
CUSTOM_KINDS = {
    "ScaledObject",
    "TriggerAuthentication",
    "PodMonitor",
    "PrometheusRule",
    "RabbitmqCluster",
}
CUSTOM_GROUPS = ("keda.sh", "monitoring.coreos.com", "rabbitmq.com")
# Upstream CRDs, copied unchanged (public data): KEDA's and prometheus-operator's in the
# shared reference directory, the RabbitMQ Cluster Operator's in the repository
# (tests/data/crds/SOURCES.txt says where each comes from).
UPSTREAM_CRDS = Path(os.environ.get("UPSTREAM_CRDS_DIR", "/work/shared/upstream-crds"))
REPO_CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
WORKLOADS = {"Deployment", "Job"}


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if IN_CI:
            pytest.fail("kubectl is not installed, and CI=true (scripts/test.sh installs it)")
        pytest.skip("kubectl is not installed")
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in WORKLOADS
    ]


def violations(docs: list[dict[str, Any]]) -> list[str]:
    """Every broken policy, named; [] when the manifests are fine."""
    found: list[str] = []
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    config = next(
        (
            d
            for d in docs
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tickwork-config"
        ),
        None,
    )
    shutdown_s = int((config or {}).get("data", {}).get("TICKWORK_WORKER_SHUTDOWN_TIMEOUT_S", 30))
    scheduler = by_name.get(("Deployment", "tickwork-scheduler"))
    if scheduler is None:
        found.append("no scheduler Deployment")
    else:
        if scheduler["spec"].get("replicas") != 1:
            found.append("scheduler replicas must be 1")
        if scheduler["spec"].get("strategy", {}).get("type") != "Recreate":
            found.append("scheduler strategy must be Recreate")
    worker = by_name.get(("Deployment", "tickwork-worker"))
    if worker is None:
        found.append("no worker Deployment")
    elif worker["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30) < shutdown_s:
        found.append("worker terminationGracePeriodSeconds < TICKWORK_WORKER_SHUTDOWN_TIMEOUT_S")
    for where, spec in pod_specs(docs):
        pod_non_root = spec.get("securityContext", {}).get("runAsNonRoot") is True
        for kind, containers in (
            ("container", spec.get("containers", [])),
            ("init container", spec.get("initContainers", [])),
        ):
            for c in containers:
                name = f"{where} {kind} {c['name']}"
                security = c.get("securityContext", {})
                if not (pod_non_root or security.get("runAsNonRoot") is True):
                    found.append(f"{name} may run as root")
                if security.get("runAsUser") == 0:
                    found.append(f"{name} runs as user 0")
                resources = c.get("resources", {})
                if not resources.get("requests") or not resources.get("limits"):
                    found.append(f"{name} has no resource requests and limits")
                image = c.get("image", "")
                if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
                    found.append(f"{name} image {image!r} is untagged or latest")
                probed = "livenessProbe" in c and "readinessProbe" in c
                if kind == "container" and where.startswith("Deployment") and not probed:
                    found.append(f"{name} lacks a liveness or readiness probe")
                for env in c.get("env", []):
                    if "value" in env and re.search(
                        r"PASSWORD|SECRET|KEY|TOKEN|_URL$", env["name"]
                    ):
                        found.append(f"{name} sets {env['name']} inline, not by reference")
    for d in docs:
        if d["kind"] == "Secret":
            found.append(f"Secret/{d['metadata']['name']} is in the manifests (reference it)")
        if d["kind"] == "ConfigMap":
            for key in d.get("data", {}):
                if re.search(r"PASSWORD|SECRET|FERNET|DATABASE_URL|BROKER_URL", key):
                    found.append(f"ConfigMap/{d['metadata']['name']} holds secret {key}")
        if d["kind"] == "ScaledObject" and d["spec"].get("minReplicaCount", 0) < 1:
            found.append("ScaledObject minReplicaCount must be >= 1 (delayed messages)")
        if d["kind"] == "PodMonitor":
            for endpoint in d["spec"]["podMetricsEndpoints"]:
                if endpoint.get("honorLabels") is not True:
                    found.append("PodMonitor must set honorLabels (the `job` label)")
    return found


def test_every_overlay_renders_and_validates(rendered: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in rendered}
    assert {"Deployment", "Job", "ConfigMap", "Service", "PodDisruptionBudget"} <= kinds
    for doc in rendered:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS, doc["apiVersion"]
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_policies_hold(rendered: list[dict[str, Any]]) -> None:
    assert violations(rendered) == []


def test_prod_scales_with_keda_and_ships_monitoring() -> None:
    docs = render("prod")
    kinds = {d["kind"] for d in docs}
    assert {"ScaledObject", "TriggerAuthentication", "PrometheusRule", "PodMonitor"} <= kinds
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    queues = [t["metadata"]["queueName"] for t in scaled["spec"]["triggers"]]
    # one trigger per queue workers consume, delay queues included, with the prefix
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["data"])
    prefix = config["data"].get("TICKWORK_QUEUE_PREFIX", "")
    from tickwork import queues as names

    expected = [prefix + q + s for q in names.ALL for s in ("", ".DQ")]
    assert sorted(queues) == sorted(expected)
    assert "HorizontalPodAutoscaler" in {d["kind"] for d in render("hpa")}


def test_policy_checker_catches_each_violation() -> None:
    # Given the dev manifests with every rule broken once,
    docs = render("dev")
    scheduler = next(d for d in docs if d["metadata"]["name"] == "tickwork-scheduler")
    scheduler["spec"]["replicas"] = 2
    scheduler["spec"]["strategy"] = {"type": "RollingUpdate"}
    worker = next(d for d in docs if d["metadata"]["name"] == "tickwork-worker")
    pod = worker["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 5
    pod["securityContext"].pop("runAsNonRoot")
    container = pod["containers"][0]
    container["image"] = "ghcr.io/tickwork/tickwork:latest"
    container.pop("livenessProbe")
    container["resources"] = {}
    container["env"] = [{"name": "TICKWORK_DATABASE_URL", "value": "postgresql://u:p@db/x"}]
    docs.append({"kind": "Secret", "metadata": {"name": "oops"}})
    # then each is reported.
    found = "\n".join(violations(docs))
    for expected in (
        "replicas must be 1",
        "Recreate",
        "terminationGracePeriodSeconds",
        "may run as root",
        "latest",
        "probe",
        "resource requests",
        "inline",
        "Secret/oops",
    ):
        assert expected in found, expected


def test_dockerfile_is_multi_stage_non_root_without_build_tools() -> None:
    text = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    assert "build-essential" not in final and "gcc" not in final
    user = re.search(r"(?m)^USER (\S+)", final)
    assert user and not user.group(1).startswith(("0", "root"))
    assert 'ENTRYPOINT ["tickwork"]' in final
    assert ":latest" not in text


def _strict(schema: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema that refuses unknown fields (the API server
    would silently prune them: a misspelt field would be lost)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def test_rabbitmq_cluster_overlay_quorum_and_valid_rabbitmqcluster() -> None:
    import jsonschema

    docs = render("rabbitmq-cluster")
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["data"])
    assert config["data"]["TICKWORK_QUEUE_TYPE"] == "quorum"
    cluster = next(d for d in docs if d["kind"] == "RabbitmqCluster")
    assert cluster["spec"]["replicas"] == 3
    auth = next(d for d in docs if d["kind"] == "TriggerAuthentication")
    assert (
        auth["spec"]["secretTargetRef"][0]["name"] == f"{cluster['metadata']['name']}-default-user"
    )
    crd = yaml.safe_load((REPO_CRDS / "rabbitmq.com_rabbitmqclusters.yaml").read_text())
    version = cluster["apiVersion"].split("/")[1]
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    assert version in served and served[version]["served"]
    schema = _strict(served[version]["schema"]["openAPIV3Schema"])
    jsonschema.validate(cluster, schema)
    # and the checker refuses a misspelt field.
    broken = {**cluster, "spec": {**cluster["spec"], "replica": 3}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)

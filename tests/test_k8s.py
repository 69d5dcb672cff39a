"""The Kubernetes manifests (deploy/k8s). No cluster runs here: the files are parsed and their
wiring checked, and the scaler trigger is read by the scaler's own metadata parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from jobs_api.keda_scaler import Trigger
from jobs_common._durations import parse_duration
from jobs_common.settings import Settings

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def _resources() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_every_manifest_has_only_kubernetes_metadata():
    """A setting put under metadata instead of data is refused by kubectl's strict validation."""
    allowed = {"name", "namespace", "labels", "annotations"}
    for (kind, name), document in _resources().items():
        assert set(document["metadata"]) <= allowed, (
            f"{kind} {name}: metadata has {set(document['metadata']) - allowed}"
        )


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_selectors_services_and_ports_line_up():
    resources = _resources()
    for name in ("job-scheduler-api", "job-scheduler-worker"):
        deployment = resources[("Deployment", name)]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    api = resources[("Deployment", "job-scheduler-api")]
    service = resources[("Service", "job-scheduler-api")]
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    container_ports = {p["name"]: p["containerPort"] for p in _container(api)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports.keys()
    config = resources[("ConfigMap", "job-scheduler-config")]["data"]
    assert container_ports["grpc"] == int(config["GRPC_PORT"])
    assert container_ports["metrics"] == int(config["METRICS_PORT"])
    assert container_ports["health"] == int(config["GRPC_HEALTH_PORT"])
    assert _container(api)["readinessProbe"]["grpc"]["port"] == container_ports["health"]
    assert _container(api)["livenessProbe"]["grpc"]["port"] == container_ports["health"]
    worker_ports = {
        p["name"]: p["containerPort"] for p in _container(resources[("Deployment", "job-scheduler-worker")])["ports"]
    }
    assert worker_ports["metrics"] == int(config["WORKER_METRICS_PORT"])


def test_settings_are_ones_the_services_read_and_come_from_the_config_and_secret():
    resources = _resources()
    assert set(resources[("ConfigMap", "job-scheduler-config")]["data"]) <= SETTING_NAMES
    for kind, name in (
        ("Deployment", "job-scheduler-api"),
        ("Deployment", "job-scheduler-worker"),
        ("Job", "job-scheduler-migrate"),
    ):
        spec = resources[(kind, name)]["spec"]["template"]["spec"]
        [container] = spec["containers"]
        sources = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert sources == {"job-scheduler-config", "job-scheduler-secrets"}


def test_workers_get_the_time_to_drain_before_the_kubelet_kills_them():
    resources = _resources()
    config = resources[("ConfigMap", "job-scheduler-config")]["data"]
    worker = resources[("Deployment", "job-scheduler-worker")]["spec"]["template"]["spec"]
    drain = parse_duration(config["WORKER_DRAIN_TIMEOUT"])
    assert drain > parse_duration(config["WORKER_HTTP_TIMEOUT"])
    assert worker["terminationGracePeriodSeconds"] > drain.total_seconds()
    assert _container(resources[("Deployment", "job-scheduler-worker")])["livenessProbe"]["exec"]["command"] == [
        "python", "-m", "jobs_worker.healthcheck",
    ]  # fmt: skip
    limits = _container(resources[("Deployment", "job-scheduler-worker")])["resources"]["limits"]
    assert set(limits) == {"cpu", "memory"}


def test_the_migration_runs_the_api_image_and_the_migrate_module():
    resources = _resources()
    [migrate] = resources[("Job", "job-scheduler-migrate")]["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["python", "-m", "jobs_common.migrate"]
    assert migrate["image"] == _container(resources[("Deployment", "job-scheduler-api")])["image"]


def test_keda_scales_the_workers_through_the_api_external_scaler():
    resources = _resources()
    scaled = resources[("ScaledObject", "job-scheduler-worker")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "job-scheduler-worker"
    assert ("Deployment", scaled["spec"]["scaleTargetRef"]["name"]) in resources
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] in ("external", "external-push")
    host, port = trigger["metadata"]["scalerAddress"].rsplit(":", 1)
    service = resources[("Service", host)]
    assert int(port) in {p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"}
    # The trigger is read by the scaler's own parser, and names the queue the workers serve.
    parsed = Trigger(trigger["metadata"])
    assert parsed.queue == resources[("ConfigMap", "job-scheduler-config")]["data"]["WORKER_QUEUE"]
    assert parsed.target > 0
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_the_ha_overlay_uses_sentinels_and_a_synchronous_cloudnativepg_cluster():
    overlay = K8S / "ha"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert ".." in kustomization["resources"]
    for name in kustomization["resources"]:
        assert (overlay / name).exists(), name
    [patch] = kustomization["patches"]
    config = yaml.safe_load((overlay / patch["path"]).read_text())
    assert (config["kind"], config["metadata"]["name"]) == (patch["target"]["kind"], patch["target"]["name"])
    assert set(config["data"]) <= SETTING_NAMES
    base = _resources()[("ConfigMap", "job-scheduler-config")]["data"]
    settings = Settings.model_validate({k.lower(): v for k, v in {**base, **config["data"]}.items()})
    assert settings.sentinel_addresses == [("redis", 26379)]
    [cluster] = yaml.safe_load_all((overlay / "postgres-cluster.yaml").read_text())
    assert cluster["apiVersion"].startswith("postgresql.cnpg.io/")
    assert cluster["spec"]["instances"] >= 2
    assert cluster["spec"]["minSyncReplicas"] >= 1  # a promotion loses no acknowledged commit
    # The Secret's DATABASE_URL the kustomization describes points at the cluster's rw service.
    assert (
        f"@{cluster['metadata']['name']}-rw:5432/{cluster['spec']['bootstrap']['initdb']['database']}"
        in (overlay / "kustomization.yaml").read_text()
    )

"""The manifests state the image's contract as the image and the server define it.

Port, user, health paths, probe timing, variable names, the drain time and the thread
count each have one home (images.py, the Dockerfile, service/); the manifests' modules
(ci/src/onnx_serving/deploy/) import what they can and restate the rest, and these tests
compare every restated value with its home.
"""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from onnx_serving.deploy import kserve, kubernetes, pod
from onnx_serving.images import (
    CONTAINER_PORT,
    HARDENED_RUN_FLAGS,
    IMAGE_UID,
    MODEL_DIR,
    STOP_TIMEOUT_S,
)
from onnx_serving.variants import DOCKERFILE, PUBLISHED, Variant
from service import cpus, healthcheck, settings

from .support import REPO, all_documents, containers, one, pod_spec, rendered, workloads

DECLARED = {spec.env: (spec, default) for _, spec, default in settings.declared()}


def _stages() -> dict[str, str]:
    """Each stage of the multi-target Dockerfile, continuation lines joined."""
    text = (REPO / DOCKERFILE).read_text().replace("\\\n", " ")
    stages: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        match = re.match(r"FROM \S+ AS (\S+)", line)
        if match:
            name = match.group(1)
        stages[name] = stages.get(name, "") + line + "\n"
    return stages


def _instruction(stage: str, keyword: str) -> list[str]:
    return [
        line.split(None, 1)[1]
        for line in _stages()[stage].splitlines()
        if line.startswith(keyword + " ")
    ]


def _image_env(variant: Variant) -> dict[str, str]:
    """The ENV the variant's image sets: the final stage's, then its own."""
    env: dict[str, str] = {}
    for stage in ("serving", variant.spec.target):
        for line in _instruction(stage, "ENV"):
            for pair in shlex.split(line):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _healthcheck() -> dict[str, int]:
    (line,) = _instruction("serving", "HEALTHCHECK")
    return {k: int(v.rstrip("s")) for k, v in re.findall(r"--([a-z-]+)=(\S+)", line)}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def rendered_instance(variant: Variant) -> str:
    return pod.NAME + variant.spec.tag_suffix


def _seconds(probe: dict[str, Any]) -> int:
    return int(probe["failureThreshold"] * probe["periodSeconds"])


# ----- port and user ------------------------------------------------------------------------


def test_the_port_is_the_images() -> None:
    assert _instruction("serving", "EXPOSE") == [str(CONTAINER_PORT)]
    assert _image_env(Variant.cpu)["PORT"] == str(CONTAINER_PORT)
    assert DECLARED["PORT"][1] == CONTAINER_PORT
    for variant, doc in workloads():
        for container in containers(doc):
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert list(ports.values()) == [CONTAINER_PORT], (variant, doc["kind"])
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = container[probe]["httpGet"]["port"]
                assert ports.get(port, port) == CONTAINER_PORT
            # Knative sets PORT itself (and rejects it); the image's PORT is the port above.
            assert "PORT" not in _env(container)
        annotations = (
            doc["spec"]["template"]["metadata"]["annotations"]
            if doc["kind"] == "Deployment"
            else doc["spec"]["annotations"]
        )
        assert {k: v for k, v in annotations.items() if k.endswith("/port")} in (
            {"prometheus.io/port": str(CONTAINER_PORT)},
            {"prometheus.kserve.io/port": str(CONTAINER_PORT)},
        )
    for variant in PUBLISHED:
        service = one(rendered(variant)["kubernetes.yaml"], "Service")
        (port,) = service["spec"]["ports"]
        assert (port["port"], port["targetPort"]) == (CONTAINER_PORT, "http")


def test_the_user_is_the_images_and_the_pod_is_locked_down() -> None:
    assert _instruction("serving", "USER") == [f"{IMAGE_UID}:{pod.IMAGE_GID}"]
    # The same restrictions as HARDENED_RUN_FLAGS (docker run / compose).
    assert {"--read-only", "--cap-drop", "no-new-privileges"} <= set(HARDENED_RUN_FLAGS)
    for _, doc in workloads():
        for container in containers(doc):
            security = container["securityContext"]
            assert security["runAsUser"] == IMAGE_UID
            assert security["runAsGroup"] == pod.IMAGE_GID
            assert security["runAsNonRoot"] is True
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["privileged"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            assert all("hostPort" not in port for port in container["ports"])
        # The rest of the restricted Pod Security Standard: no host namespaces or paths.
        template = pod_spec(doc)
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(template)
        assert all(set(volume) == {"name", "emptyDir"} for volume in template["volumes"])
        if doc["kind"] == "Deployment":
            assert template["securityContext"]["runAsUser"] == IMAGE_UID
            assert template["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert template["automountServiceAccountToken"] is False


def test_the_writable_tmp_is_the_one_of_the_hardened_run_flags() -> None:
    tmpfs = HARDENED_RUN_FLAGS[HARDENED_RUN_FLAGS.index("--tmpfs") + 1]
    path, options = tmpfs.split(":", 1)
    size = re.search(r"size=([0-9]+)m", options)
    assert size is not None
    for _, doc in workloads():
        (volume,) = pod_spec(doc)["volumes"]
        assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{size.group(1)}Mi"}
        for container in containers(doc):
            assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": path}]


# ----- health and metrics -------------------------------------------------------------------


def test_probe_paths_are_the_servers_routes() -> None:
    app = (REPO / "service/app.py").read_text()
    for path in (pod.LIVE_PATH, pod.READY_PATH, pod.METRICS_PATH):
        assert re.search(rf'@app\.get\(\s*"{re.escape(path)}"', app), path
    # The image's HEALTHCHECK asks the same readiness URL.
    probe = Path(healthcheck.__file__).read_text()
    assert f"127.0.0.1:{{port}}{pod.READY_PATH}" in probe
    for _, doc in workloads():
        for container in containers(doc):
            assert container["startupProbe"]["httpGet"]["path"] == pod.LIVE_PATH
            assert container["livenessProbe"]["httpGet"]["path"] == pod.LIVE_PATH
            assert container["readinessProbe"]["httpGet"]["path"] == pod.READY_PATH


def test_probe_timing_is_the_images_healthcheck() -> None:
    check = _healthcheck()
    assert (check["interval"], check["timeout"], check["retries"]) == (
        pod.PROBE_PERIOD_S,
        pod.PROBE_TIMEOUT_S,
        pod.PROBE_FAILURES,
    )
    assert healthcheck.TIMEOUT_SECONDS <= pod.PROBE_TIMEOUT_S
    startup: dict[Variant, int] = {}
    for variant, doc in workloads():
        for container in containers(doc):
            for name in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container[name]
                assert probe["periodSeconds"] == check["interval"]
                assert probe["timeoutSeconds"] == check["timeout"]
            assert container["livenessProbe"]["failureThreshold"] == check["retries"]
            assert container["readinessProbe"]["failureThreshold"] == check["retries"]
            startup[variant] = _seconds(container["startupProbe"])
    # The image's start period covers a CPU start; a GPU (CUDA libraries) gets longer.
    assert startup[Variant.cpu] >= check["start-period"]
    assert startup[Variant.gpu] > startup[Variant.cpu]
    assert startup[Variant.gpu] == pod.sizing(Variant.gpu).startup_s


def test_prometheus_scrapes_the_metrics_route() -> None:
    for variant in PUBLISHED:
        docs = rendered(variant)
        template = one(docs["kubernetes.yaml"], "Deployment")["spec"]["template"]
        assert template["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(CONTAINER_PORT),
            "prometheus.io/path": pod.METRICS_PATH,
        }
        runtime = one(docs["kserve/servingruntime.yaml"], "ServingRuntime")
        assert runtime["spec"]["annotations"]["prometheus.kserve.io/path"] == pod.METRICS_PATH
        isvc = one(docs["kserve/inferenceservice.yaml"], "InferenceService")
        annotations = isvc["metadata"]["annotations"]
        assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"


# ----- configuration ------------------------------------------------------------------------


def test_every_variable_set_is_a_declared_setting_with_a_valid_value() -> None:
    assert pod.MODEL_REPOSITORY_ENV in DECLARED
    assert pod.LOG_FORMAT_ENV in DECLARED
    seen = set()
    for variant, doc in workloads():
        for container in containers(doc):
            for name, value in _env(container).items():
                assert name in DECLARED, f"{variant} {doc['kind']} sets undeclared {name}"
                DECLARED[name][0].parse(value)  # raises on a value the server would refuse
                seen.add(name)
            # Thread count and providers come from the image and the CPU limit, not copies.
            assert "INTRA_OP_THREADS" not in _env(container)
            assert "EXECUTION_PROVIDERS" not in _env(container)
    assert seen == {pod.MODEL_REPOSITORY_ENV, pod.LOG_FORMAT_ENV}


def test_the_model_repository_is_where_each_platform_puts_models() -> None:
    for variant in PUBLISHED:
        docs = rendered(variant)
        # Plain Kubernetes serves the repository baked into the image.
        assert _image_env(variant)["MODEL_REPOSITORY"] == MODEL_DIR
        deployment = one(docs["kubernetes.yaml"], "Deployment")
        assert "MODEL_REPOSITORY" not in _env(containers(deployment)[0])
        # KServe downloads storageUri to /mnt/models: the runtime serves that folder.
        runtime = one(docs["kserve/servingruntime.yaml"], "ServingRuntime")
        (container,) = containers(runtime)
        assert container["name"] == kserve.KSERVE_CONTAINER_NAME
        assert _env(container)["MODEL_REPOSITORY"] == kserve.KSERVE_MODEL_DIR
        isvc = one(docs["kserve/inferenceservice.yaml"], "InferenceService")
        model = isvc["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        formats = [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
        assert model["modelFormat"]["name"] in formats
        assert model["protocolVersion"] in runtime["spec"]["protocolVersions"] == ["v2"]
        assert model["storageUri"] == kserve.DEFAULT_STORAGE_URI


def test_the_grace_period_covers_the_servers_drain() -> None:
    drain = DECLARED["SHUTDOWN_TIMEOUT_S"][1]
    # Queued inference-log rows are flushed after the drain, when that setting exists.
    flush = DECLARED.get("PREDICTION_LOG_FLUSH_TIMEOUT_S", (None, 0))[1]
    assert drain + flush <= STOP_TIMEOUT_S
    for variant in PUBLISHED:
        template = pod_spec(one(rendered(variant)["kubernetes.yaml"], "Deployment"))
        (container,) = template["containers"]
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        # The grace period starts with preStop; SIGTERM (and the drain) follow it.
        assert template["terminationGracePeriodSeconds"] == pre_stop + STOP_TIMEOUT_S
        assert template["terminationGracePeriodSeconds"] - pre_stop >= drain + flush


@pytest.mark.parametrize("variant", PUBLISHED)
def test_the_thread_count_follows_the_cpu_limit(variant: Variant, tmp_path: Path) -> None:
    """The server sizes ONNX Runtime from the cgroup quota a CPU limit sets: a whole-core
    limit gives exactly that many threads, so no thread variable is needed."""
    docs = rendered(variant)
    for doc in (
        one(docs["kubernetes.yaml"], "Deployment"),
        one(docs["kserve/servingruntime.yaml"], "ServingRuntime"),
    ):
        (container,) = containers(doc)
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert limits == requests  # Guaranteed: the limit is what the pod always gets
        cores = int(limits["cpu"])
        assert str(cores) == limits["cpu"]
        proc = tmp_path / "proc"
        (proc / "self").mkdir(parents=True, exist_ok=True)
        (proc / "self/cgroup").write_text("0::/kubepods/pod/server\n")
        group = tmp_path / "cgroup/kubepods/pod/server"
        group.mkdir(parents=True, exist_ok=True)
        (group / "cpu.max").write_text(f"{cores * 100000} 100000\n")
        usable = cpus.usable_cpu_count(set(range(64)), tmp_path / "cgroup", proc)
        assert usable == cores == pod.sizing(variant).cpu
        assert DECLARED["INFERENCE_WORKERS"][1] == 1  # so all of them go to one session


def test_the_gpu_variant_asks_for_a_gpu_and_the_image_uses_it() -> None:
    assert "cuda" in _image_env(Variant.gpu)["EXECUTION_PROVIDERS"].split(",")
    for variant, doc in workloads():
        (container,) = containers(doc)
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert gpus == ("1" if variant is Variant.gpu else None)
    deployment = one(rendered(Variant.gpu)["kubernetes.yaml"], "Deployment")
    tolerations = pod_spec(deployment)["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_autoscaling_and_disruption_budget_target_the_workload() -> None:
    for variant in PUBLISHED:
        docs = rendered(variant)["kubernetes.yaml"]
        deployment = one(docs, "Deployment")
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert deployment["spec"]["template"]["metadata"]["labels"] == selector
        assert "replicas" not in deployment["spec"]  # the autoscaler owns it
        hpa = one(docs, "HorizontalPodAutoscaler")
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        sizing = pod.sizing(variant)
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
            sizing.min_replicas,
            sizing.max_replicas,
        )
        pdb = one(docs, "PodDisruptionBudget")
        assert pdb["spec"]["selector"]["matchLabels"] == selector
        assert one(docs, "Service")["spec"]["selector"] == selector
        startup = math.ceil(sizing.startup_s / pod.PROBE_PERIOD_S)
        assert containers(deployment)[0]["startupProbe"]["failureThreshold"] == startup


def test_every_document_is_labelled_for_its_instance() -> None:
    for variant, _, doc in all_documents():
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == pod.NAME
        assert labels["app.kubernetes.io/instance"] == rendered_instance(variant)
        assert doc["metadata"]["name"] == rendered_instance(variant)


def test_every_published_variant_has_manifests() -> None:
    """A published row of the variant table has its pod sizing (the table refuses one without)
    and a Dockerfile target."""
    assert all(variant.spec.sizing is not None for variant in PUBLISHED)
    assert kubernetes.BASE_VARIANT in PUBLISHED
    for variant in PUBLISHED:
        assert variant.spec.target in _stages(), variant

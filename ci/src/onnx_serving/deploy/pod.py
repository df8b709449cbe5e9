"""The server container as every manifest runs it: names and labels, probes, resources,
security context and the writable /tmp. The Deployment (kubernetes.py) and the ServingRuntime
(kserve.py) both build their container from these.

Every fact about the image comes from its one home: the port, user and run flags from
images.py, tag suffixes and pod sizing from variants.py. The server's own names (health
paths, settings) are restated below because this package cannot import service/;
tests/deploy compare each with service/ and the Dockerfile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from ..images import HARDENED_RUN_FLAGS, IMAGE_UID
from ..variants import PodSizing, Variant

Manifest = dict[str, Any]

NAME = "onnx-serving"
# Stated in every resource (scanners flag workloads left in `default`); a user's kustomize
# overlay changes it with `namespace:`, render() with `namespace=`.
DEFAULT_NAMESPACE = NAME
# The image in deploy/'s sources: a user's kustomize `images:` entry (name: onnx-serving)
# sets the real repository and digest. No image can have the placeholder digest, so deploy/
# as committed fails closed, and is still pinned by digest.
IMAGE_NAME = NAME
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
PLACEHOLDER_IMAGE = f"{IMAGE_NAME}@{PLACEHOLDER_DIGEST}"
# The Dockerfile's `USER 10001:10001`: the group id equals the user id.
IMAGE_GID = IMAGE_UID

# The server's side of the contract: service/app.py routes, service/settings.py variables,
# the Dockerfile's HEALTHCHECK (interval 5 s, timeout 3 s, 3 retries, start period 60 s).
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
METRICS_PATH = "/metrics"
MODEL_REPOSITORY_ENV = "MODEL_REPOSITORY"
LOG_FORMAT_ENV = "LOG_FORMAT"
PROBE_PERIOD_S = 5
PROBE_TIMEOUT_S = 3
PROBE_FAILURES = 3


def sizing(variant: Variant) -> PodSizing:
    """The pod sizing of a published variant (the variant table refuses a published row
    without one)."""
    if variant.spec.sizing is None:
        raise ValueError(f"variant {variant.value!r} has no pod sizing: it is not published")
    return variant.spec.sizing


def instance(variant: Variant) -> str:
    return NAME + variant.spec.tag_suffix  # onnx-serving, onnx-serving-gpu


def labels(instance: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": instance}


def metadata(name: str, namespace: str, labels: dict[str, str]) -> Manifest:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def tmpfs() -> tuple[str, str]:
    """HARDENED_RUN_FLAGS' `--tmpfs /tmp:…,size=64m` as (mount path, Kubernetes quantity)."""
    spec = HARDENED_RUN_FLAGS[HARDENED_RUN_FLAGS.index("--tmpfs") + 1]
    path, _, options = spec.partition(":")
    sizes = [o.removeprefix("size=") for o in options.split(",") if o.startswith("size=")]
    match = re.fullmatch(r"([0-9]+)([kmg])", sizes[0]) if sizes else None
    if match is None:
        raise ValueError(f"HARDENED_RUN_FLAGS: --tmpfs {spec!r} has no size=<n>[kmg]")
    return path, match[1] + {"k": "Ki", "m": "Mi", "g": "Gi"}[match[2]]


def startup_failures(pods: PodSizing) -> int:
    """The startup probe's failureThreshold: periods until models (and CUDA) have loaded."""
    return math.ceil(pods.startup_s / PROBE_PERIOD_S)


def _probe(path: str, port: int | str, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": PROBE_PERIOD_S,
        "timeoutSeconds": PROBE_TIMEOUT_S,
        "failureThreshold": failures,
    }


def probes(pods: PodSizing, port: int | str) -> Manifest:
    # Models load before the server listens: the startup probe covers that, then liveness
    # (is the event loop answering?) and readiness take over with the HEALTHCHECK's timing.
    return {
        "startupProbe": _probe(LIVE_PATH, port, startup_failures(pods)),
        "livenessProbe": _probe(LIVE_PATH, port, PROBE_FAILURES),
        "readinessProbe": _probe(READY_PATH, port, PROBE_FAILURES),
    }


def resources(pods: PodSizing) -> Manifest:
    amounts = {"cpu": str(pods.cpu), "memory": pods.memory}
    if pods.gpus:
        amounts["nvidia.com/gpu"] = str(pods.gpus)
    # Requests = limits: a Guaranteed pod, and the thread count the limit implies is real.
    return {"requests": dict(amounts), "limits": dict(amounts)}


def container_security() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_GID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def tmp_volume() -> tuple[Manifest, Manifest]:
    """The writable /tmp of HARDENED_RUN_FLAGS (the server itself writes nothing)."""
    path, size = tmpfs()
    return (
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": size}},
        {"name": "tmp", "mountPath": path},
    )


def env(extra: Sequence[tuple[str, str]] = ()) -> list[Manifest]:
    # INTRA_OP_THREADS stays unset: the server derives it from the CPU limit.
    pairs = [*extra, (LOG_FORMAT_ENV, "json")]  # one JSON object per line for log collectors
    return [{"name": name, "value": value} for name, value in pairs]

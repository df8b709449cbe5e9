"""The Kubernetes workload: Deployment, Service, HorizontalPodAutoscaler and
PodDisruptionBudget of one variant, as deploy/kubernetes/base states them for BASE_VARIANT
(kustomize.py derives the other variants' overlays from the same pieces)."""

from __future__ import annotations

from ..images import CONTAINER_PORT, IMAGE_UID, STOP_TIMEOUT_S
from ..variants import PodSizing, Variant
from . import pod
from .pod import DEFAULT_NAMESPACE, IMAGE_GID, NAME, Manifest

# Where the manifests were validated (tests/deploy): the Kubernetes API versions of the
# schemas kubernetes-validate bundles (1.34: the oldest with preStop `sleep` GA and the API
# KServe v0.20 is built against).
KUBERNETES_VERSIONS = ("1.34.0", "1.37.0")
CONTAINER_NAME = "server"
# Endpoints take a moment to drop a terminating pod: keep serving that long before SIGTERM.
PRE_STOP_S = 5
# SIGTERM drains for up to STOP_TIMEOUT_S (images.py): the grace period covers both.
TERMINATION_GRACE_S = PRE_STOP_S + STOP_TIMEOUT_S
CPU_TARGET_PERCENT = 70  # of the CPU request: headroom while new pods start
BASE_VARIANT = Variant.cpu  # deploy/kubernetes/base is this variant; overlays patch it


def deployment(pods: PodSizing, namespace: str, labels: dict[str, str]) -> Manifest:
    volume, mount = pod.tmp_volume()
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pod.metadata(NAME, namespace, labels),
        "spec": {
            # No `replicas`: the HorizontalPodAutoscaler owns it, and an apply must not reset it.
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": dict(labels)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": pods.max_surge,
                    "maxUnavailable": pods.max_unavailable,
                },
            },
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(CONTAINER_PORT),
                        "prometheus.io/path": pod.METRICS_PATH,
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,  # the server never calls the API
                    "enableServiceLinks": False,  # no *_PORT variables beside PORT
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": IMAGE_UID,
                        "runAsGroup": IMAGE_GID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": CONTAINER_NAME,
                            "image": pod.PLACEHOLDER_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [
                                {"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}
                            ],
                            "env": pod.env(),
                            "resources": pod.resources(pods),
                            **pod.probes(pods, "http"),
                            "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_S}}},
                            "securityContext": pod.container_security(),
                            "volumeMounts": [mount],
                        }
                    ],
                    "volumes": [volume],
                },
            },
        },
    }


def service(namespace: str, labels: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": pod.metadata(NAME, namespace, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(labels),
            "ports": [
                {
                    "name": "http",
                    "port": CONTAINER_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def autoscaler(pods: PodSizing, namespace: str, labels: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": pod.metadata(NAME, namespace, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": pods.min_replicas,
            "maxReplicas": pods.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": CPU_TARGET_PERCENT,
                        },
                    },
                }
            ],
            # Scale up at once; scale down only after 5 minutes of lower load.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def disruption_budget(namespace: str, labels: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": pod.metadata(NAME, namespace, labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(labels)}},
    }


def base(namespace: str = DEFAULT_NAMESPACE) -> list[Manifest]:
    """deploy/kubernetes/base: the BASE_VARIANT's workload, named `onnx-serving`."""
    pods, labels = pod.sizing(BASE_VARIANT), pod.labels(NAME)
    return [
        deployment(pods, namespace, labels),
        service(namespace, labels),
        autoscaler(pods, namespace, labels),
        disruption_budget(namespace, labels),
    ]

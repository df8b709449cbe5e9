"""KServe: the ServingRuntime (this image as an `onnx` runtime speaking the v2 protocol) and
the InferenceService that serves a model repository with it, per published variant."""

from __future__ import annotations

from ..images import CONTAINER_PORT
from ..variants import Variant
from . import pod
from .pod import Manifest

# The KServe release whose CRDs tests/deploy vendors and validates against.
KSERVE_RELEASE = "v0.20.0"
KSERVE_CONTAINER_NAME = "kserve-container"  # the name KServe merges the predictor into
# KServe's storage initializer downloads `storageUri` here (pkg/constants: ModelDir).
KSERVE_MODEL_DIR = "/mnt/models"
DEFAULT_STORAGE_URI = "s3://my-bucket/model-repository"


def serving_runtime(variant: Variant, image: str, namespace: str) -> Manifest:
    pods = pod.sizing(variant)
    volume, mount = pod.tmp_volume()
    spec: Manifest = {
        "annotations": {  # KServe's scrape settings for the predictor pods
            "prometheus.kserve.io/port": str(CONTAINER_PORT),
            "prometheus.kserve.io/path": pod.METRICS_PATH,
        },
        # autoSelect off: other runtimes (Triton, OpenVINO) also claim `onnx`; an
        # InferenceService names this one.
        "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": False}],
        "protocolVersions": ["v2"],
        "multiModel": False,
        "containers": [
            {
                "name": KSERVE_CONTAINER_NAME,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                # Knative accepts only `http1`/`h2c` as a port name and sets PORT to this port.
                "ports": [{"name": "http1", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
                "env": pod.env([(pod.MODEL_REPOSITORY_ENV, KSERVE_MODEL_DIR)]),
                "resources": pod.resources(pods),
                # Knative allows no preStop hook and only the serving port in probes.
                **pod.probes(pods, CONTAINER_PORT),
                "securityContext": pod.container_security(),
                "volumeMounts": [mount],
            }
        ],
        "volumes": [volume],
    }
    name = pod.instance(variant)
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": pod.metadata(name, namespace, pod.labels(name)),
        "spec": spec,
    }


def inference_service(variant: Variant, uri: str, namespace: str) -> Manifest:
    pods = pod.sizing(variant)
    name = pod.instance(variant)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            **pod.metadata(name, namespace, pod.labels(name)),
            "annotations": {"serving.kserve.io/enable-prometheus-scraping": "true"},
        },
        "spec": {
            "predictor": {
                "minReplicas": pods.min_replicas,
                "maxReplicas": pods.max_replicas,
                # Knative (KServe's default mode) scales on requests in flight per pod.
                "scaleMetric": "concurrency",
                "scaleTarget": pods.kserve_concurrency,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "model": {
                    "modelFormat": {"name": "onnx"},
                    "protocolVersion": "v2",
                    "runtime": name,
                    # A model repository: <name>/<version>/model.onnx, downloaded to
                    # KSERVE_MODEL_DIR, which the runtime's MODEL_REPOSITORY points at.
                    "storageUri": uri,
                },
            }
        },
    }

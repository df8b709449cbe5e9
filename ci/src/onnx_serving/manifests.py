"""Kubernetes and KServe manifests for a published image, always pinned by digest: the files
this module renders and writes, and its command line. The resources are defined in deploy/
(pod.py, kubernetes.py, kserve.py, kustomize.py), each variant's pod sizing in its row of the
variant table, and the checks of the arguments in validation.py.

One definition, three outputs:

- `render(image, variant)`: the ready-to-apply set for one `REGISTRY/REPO@sha256:…` image:
  `<variant>/kubernetes.yaml` (Deployment, Service, HorizontalPodAutoscaler,
  PodDisruptionBudget) and `<variant>/kserve/{servingruntime,inferenceservice}.yaml`. This is
  what `dagger call manifests` and scripts/manifests.sh write, and what tests/deploy validate.
- `deploy.kustomize.sources()`: the kustomize tree committed under deploy/ (a base, overlays
  `cpu` and `gpu`, one KServe folder per variant), with a placeholder digest that a user's
  overlay replaces. `kubectl kustomize` of it with a digest set gives exactly `render()`
  (tests/deploy checks that with a real kustomize where kubectl is installed).
- `render_published(lines)`: the set for each variant that `publish` printed a line for.

Pure Python (PyYAML only), no dagger import.

    python3 -m onnx_serving.manifests --image REF@sha256:<64 hex> [--variant gpu] --out DIR
    python3 -m onnx_serving.manifests --sources deploy      # regenerate deploy/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import validation
from .deploy import kserve, kubernetes, kustomize
from .deploy.kserve import DEFAULT_STORAGE_URI
from .deploy.pod import DEFAULT_NAMESPACE
from .variants import PUBLISHED, Variant


def render(
    image: str,
    variant: Variant | str = Variant.cpu,
    storage_uri: str = DEFAULT_STORAGE_URI,
    namespace: str = DEFAULT_NAMESPACE,
) -> dict[str, str]:
    """The manifests for `image` (REGISTRY/REPO[:TAG]@sha256:…) of `variant`: path -> YAML.

    Paths: `<variant>/kubernetes.yaml`, `<variant>/kserve/servingruntime.yaml`,
    `<variant>/kserve/inferenceservice.yaml`. Raises a one-line ValueError naming a bad image,
    variant, storage URI or namespace before anything is produced.
    """
    pinned = str(validation.pinned_image(image))
    chosen = validation.deployable_variant(variant)
    uri = validation.storage_uri(storage_uri)
    namespace = validation.namespace(namespace)
    header = (
        f"# onnx-serving ({chosen.value}) running {pinned}\n"
        f"# Rendered by ci/src/onnx_serving/manifests.py (docs/DEPLOY.md).\n"
    )
    workload = kustomize.apply(kustomize.overlay(chosen), kubernetes.base(namespace), pinned)
    runtime = kserve.serving_runtime(chosen, pinned, namespace)
    service = kserve.inference_service(chosen, uri, namespace)
    return {
        f"{chosen.value}/kubernetes.yaml": kustomize.to_yaml(workload, header),
        f"{chosen.value}/kserve/servingruntime.yaml": kustomize.to_yaml([runtime], header),
        f"{chosen.value}/kserve/inferenceservice.yaml": kustomize.to_yaml([service], header),
    }


def variant_of(reference: str) -> Variant:
    """The published variant a `publish` line belongs to, by its tag's suffix (1.2.3-gpu)."""
    name = reference.partition("@")[0]
    last = name.rpartition("/")[2]
    if ":" not in last:
        raise ValueError(f"invalid published image {reference!r}: no tag to tell its variant")
    tag = last.partition(":")[2]
    by_suffix = sorted(PUBLISHED, key=lambda v: len(v.spec.tag_suffix), reverse=True)
    return next(v for v in by_suffix if tag.endswith(v.spec.tag_suffix))


def render_published(
    references: Iterable[str],
    storage_uri: str = DEFAULT_STORAGE_URI,
    namespace: str = DEFAULT_NAMESPACE,
) -> dict[str, str]:
    """The manifests for every variant in `publish`'s output (one `REF:TAG@sha256:…` line per
    tag; all tags of a variant share one digest)."""
    chosen: dict[Variant, str] = {}
    for line in (r.strip() for r in references):
        if not line:
            continue
        variant = variant_of(line)
        digest = validation.pinned_image(line).digest
        first = chosen.setdefault(variant, line)
        if validation.pinned_image(first).digest != digest:
            raise ValueError(
                f"invalid published image {line!r}: {variant.value} was also published as {first}"
            )
    if not chosen:
        raise ValueError("no published image given: expected REGISTRY/REPO:TAG@sha256:… lines")
    files: dict[str, str] = {}
    for variant, line in chosen.items():
        files.update(render(line, variant, storage_uri, namespace))
    return files


def write(files: dict[str, str], out: Path) -> list[Path]:
    """Write `files` under `out`; returns the paths written."""
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="manifests",
        description="Render the Kubernetes and KServe manifests for an image digest.",
    )
    parser.add_argument("--image", help="REGISTRY/REPOSITORY[:TAG]@sha256:<64 hex>")
    parser.add_argument(
        "--variant",
        default=Variant.cpu.value,
        help=f"the image's variant: {', '.join(v.value for v in PUBLISHED)} (default cpu)",
    )
    parser.add_argument(
        "--storage-uri",
        default=DEFAULT_STORAGE_URI,
        help=f"the InferenceService's model repository (default {DEFAULT_STORAGE_URI})",
    )
    parser.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"the namespace of every resource (default {DEFAULT_NAMESPACE})",
    )
    parser.add_argument("--out", type=Path, help="folder to write <variant>/… into")
    parser.add_argument(
        "--sources", type=Path, metavar="DIR", help="write the kustomize tree of deploy/ to DIR"
    )
    args = parser.parse_args(argv)
    try:
        if args.sources is not None:
            if args.image is not None or args.out is not None:
                raise ValueError("give either --sources DIR or --image REF --out DIR")
            written = write(kustomize.sources(), args.sources)
        else:
            if args.image is None or args.out is None:
                raise ValueError("give --image REGISTRY/REPOSITORY@sha256:… and --out DIR")
            files = render(args.image, args.variant, args.storage_uri, args.namespace)
            written = write(files, args.out)
    except (ValueError, OSError) as exc:
        print(f"manifests: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""KServe's CRD schemas, vendored: how they were cut down, and how the tests validate with them.

Each `kserve-<release>/<plural>.json` holds `source` (repository, tag, commit, path, git blob
of the upstream CRD file, and the sha256 of the cut-down schema) and `openAPIV3Schema`: the
CRD's schema for its served version, with every `description` dropped and each repeated
subschema stored once under `$defs` (a lossless rewrite; `expand` undoes it and the tests
check the sha256). Regenerate from a KServe clone (a bare one works):

    .venv/bin/python -m tests.deploy.crds /path/to/kserve.git v0.20.0

Validation is as strict as the API server with `kubectl apply --validate=strict`: unknown
fields fail (`strict`), `metadata` is checked against Kubernetes' ObjectMeta. Not checked:
CEL rules (`x-kubernetes-validations`; these CRDs have none), `format`, and KServe's
admission webhooks.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from onnx_serving.deploy.kserve import KSERVE_RELEASE

Schema = dict[str, Any]

REPOSITORY = "https://github.com/kserve/kserve"
GROUP = "serving.kserve.io"
# plural -> (kind, version): what tests/deploy validates.
CRDS = {
    "servingruntimes": ("ServingRuntime", "v1alpha1"),
    "clusterservingruntimes": ("ClusterServingRuntime", "v1alpha1"),
    "inferenceservices": ("InferenceService", "v1beta1"),
}
FOLDER = Path(__file__).with_name(f"kserve-{KSERVE_RELEASE}")
SHARED_MIN_CHARS = 300  # smaller repeated subschemas stay inline: a $ref would not pay

# Keywords whose values are schemas, maps of schemas, or lists of schemas.
_ONE = ("items", "additionalProperties", "not", "additionalItems")
_MAP = ("properties", "patternProperties", "$defs")
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def digest(schema: Schema) -> str:
    return hashlib.sha256(_canonical(schema).encode()).hexdigest()


def transform(schema: Any, node: Callable[[Schema], Schema]) -> Any:
    """Apply `node` to every subschema, children first (booleans are left alone)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _ONE:
        if key in out:
            out[key] = transform(out[key], node)
    for key in _MAP:
        if key in out:
            out[key] = {name: transform(sub, node) for name, sub in out[key].items()}
    for key in _LIST:
        if key in out:
            out[key] = [transform(sub, node) for sub in out[key]]
    return node(out)


def strip_descriptions(schema: Schema) -> Schema:
    result: Schema = transform(schema, lambda s: {k: v for k, v in s.items() if k != "description"})
    return result


def _subschemas(schema: Any) -> list[Schema]:
    found: list[Schema] = []

    def collect(sub: Schema) -> Schema:
        found.append(sub)
        return sub

    transform(schema, collect)
    return found


def compress(schema: Schema) -> Schema:
    """Each subschema that occurs more than once (and is large) stored once under `$defs`."""
    counts: dict[str, int] = {}
    for sub in _subschemas(schema):
        key = _canonical(sub)
        counts[key] = counts.get(key, 0) + 1
    defs: dict[str, Schema] = {}

    def shared(sub: Schema, top: bool = False) -> Schema:
        key = _canonical(sub)
        if not top and counts[key] > 1 and len(key) > SHARED_MIN_CHARS:
            name = hashlib.sha256(key.encode()).hexdigest()[:16]
            if name not in defs:
                defs[name] = {}  # reserved before recursing: a schema never contains itself
                defs[name] = children(sub)
            return {"$ref": f"#/$defs/{name}"}
        return children(sub)

    def children(sub: Schema) -> Schema:
        out = dict(sub)
        for key in _ONE:
            if isinstance(out.get(key), dict):
                out[key] = shared(out[key])
        for key in _MAP:
            if key in out:
                out[key] = {name: shared(s) for name, s in out[key].items()}
        for key in _LIST:
            if key in out:
                out[key] = [shared(s) for s in out[key]]
        return out

    top = shared(schema, top=True)
    return {**top, "$defs": dict(sorted(defs.items()))} if defs else top


def expand(schema: Schema) -> Schema:
    """Undo `compress`: every `$ref` into `$defs` replaced by its subschema."""
    defs: dict[str, Schema] = schema.get("$defs", {})
    body = {k: v for k, v in schema.items() if k != "$defs"}

    def node(sub: Schema) -> Schema:
        ref = sub.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return expand_def(ref.removeprefix("#/$defs/"))
        return sub

    def expand_def(name: str) -> Schema:
        result: Schema = transform(copy.deepcopy(defs[name]), node)
        return result

    result: Schema = transform(body, node)
    return result


def strict(schema: Schema) -> Schema:
    """Unknown fields rejected, as the API server's structural pruning in Strict mode does:
    every object schema is closed unless it says `x-kubernetes-preserve-unknown-fields`.
    The root's `metadata` stays open: it is ObjectMeta, checked on its own."""

    def close(sub: Schema) -> Schema:
        if (
            sub.get("type") == "object"
            and "additionalProperties" not in sub
            and not sub.get("x-kubernetes-preserve-unknown-fields")
        ):
            return {**sub, "additionalProperties": False}
        return sub

    closed: Schema = transform(schema, close)
    closed["properties"] = {**closed["properties"], "metadata": {"type": "object"}}
    return closed


def load(plural: str) -> tuple[dict[str, str], Schema]:
    """(source, openAPIV3Schema) of a vendored CRD."""
    data = json.loads((FOLDER / f"{plural}.json").read_text())
    return data["source"], data["openAPIV3Schema"]


# ----- vendoring ---------------------------------------------------------------------------


def _git(git_dir: str, *args: str) -> str:
    done = subprocess.run(
        ["git", "--git-dir", git_dir, *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def vendor(git_dir: str, tag: str) -> list[Path]:
    commit = _git(git_dir, "rev-parse", f"{tag}^{{commit}}").strip()
    FOLDER.mkdir(exist_ok=True)
    written = []
    for plural, (kind, version) in CRDS.items():
        path = f"config/crd/full/{GROUP}_{plural}.yaml"
        crd = yaml.safe_load(_git(git_dir, "show", f"{commit}:{path}"))
        assert crd["spec"]["names"]["kind"] == kind, path
        served = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = strip_descriptions(served[0]["schema"]["openAPIV3Schema"])
        source = {
            "repository": REPOSITORY,
            "tag": tag,
            "commit": commit,
            "path": path,
            "blob": _git(git_dir, "rev-parse", f"{commit}:{path}").strip(),
            "kind": kind,
            "apiVersion": f"{GROUP}/{version}",
            "cut": "spec.versions[].schema.openAPIV3Schema of apiVersion; descriptions dropped; "
            "repeated subschemas under $defs",
            "sha256": digest(schema),
        }
        target = FOLDER / f"{plural}.json"
        body = {"source": source, "openAPIV3Schema": compress(schema)}
        target.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        written.append(target)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] != KSERVE_RELEASE:
        sys.exit(f"usage: python -m tests.deploy.crds KSERVE_GIT_DIR {KSERVE_RELEASE}")
    for written_path in vendor(sys.argv[1], sys.argv[2]):
        print(written_path)

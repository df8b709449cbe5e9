"""Where an image's models come from, and how the image names them.

`--models DIR` is a model repository (`<name>/<version>/model.onnx`, what the server reads at
/models) or a folder holding one .onnx file; a single file `x.onnx` is served as model `x`,
version 1, unless `--model-name` / `--model-version` say otherwise. `--model-url` with
`--model-sha256` fetches one model during the build instead (dockerfiles/fetch-model.py).
Every image records what it serves as the label MODELS_LABEL: `name/version@sha256:hex`
entries. The Dagger module and scripts/ both decide here, before anything is built. Pure
Python, no dagger import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

MODEL_FILE = "model.onnx"
# The image label (and index annotation) naming every model the image serves.
MODELS_LABEL = "io.onnx-serving.models"
_REPOSITORY_ENTRY = re.compile(r"(?P<name>[A-Za-z0-9_.-]+)/(?P<version>[1-9][0-9]*)/model\.onnx")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A line of `sha256sum` run in a models folder: `<hex>  ./<name>/<version>/model.onnx`.
_SHA256SUM_LINE = re.compile(r"(?P<hex>[0-9a-f]{64})  (?:\./)?(?P<path>\S+)")


@dataclass(frozen=True)
class ModelOptions:
    """How a single model is named, or fetched at build time; empty values mean "not given"."""

    name: str = ""  # --model-name: a single file's (or URL's) model name
    version: int | None = None  # --model-version: its version (default 1)
    url: str = ""  # --model-url: fetched during the build
    sha256: str = ""  # --model-sha256: the fetched file's digest, checked by the build

    @property
    def served_version(self) -> int:
        return self.version or 1

    def checked(self, models_given: bool) -> ModelOptions:
        """These options, validated (and the digest normalised), or a one-line ValueError."""
        if self.name and not _MODEL_NAME.fullmatch(self.name):
            raise ValueError(
                f"--model-name {self.name!r}: use letters, digits, '_', '.' and '-' only"
            )
        if self.version is not None and self.version < 1:
            raise ValueError(f"--model-version {self.version}: must be a positive integer")
        digest = self.sha256.lower().removeprefix("sha256:")
        if not self.url:
            if self.sha256:
                raise ValueError("--model-sha256 checks a --model-url download: give the URL too")
            if not models_given and (self.name or self.version is not None):
                raise ValueError(
                    "--model-name/--model-version name a single .onnx file: give it with "
                    "--models, or fetch it with --model-url"
                )
            return self
        if models_given:
            raise ValueError("give either --models (baked from a folder) or --model-url")
        url = urlsplit(self.url)
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise ValueError(f"--model-url {self.url!r}: expected an http(s) URL")
        if url.username is not None or url.password is not None:
            # Build args and progress output show the URL: a password in it would leak.
            raise ValueError("--model-url: no user or password in the URL (it is logged)")
        if not _SHA256.fullmatch(digest):
            raise ValueError(
                f"--model-sha256 {self.sha256!r}: a --model-url needs the file's sha256 "
                "(64 hex digits, e.g. from `sha256sum model.onnx`)"
            )
        name = self.name or url_model_name(self.url)
        return ModelOptions(name, self.version, self.url, digest)

    def build_args(self) -> dict[str, str]:
        """The Dockerfile's download args (none without a URL)."""
        if not self.url:
            return {}
        return {
            "MODEL_URL": self.url,
            "MODEL_SHA256": self.sha256,
            "MODEL_NAME": self.name,
            "MODEL_VERSION": str(self.served_version),
        }

    def fetched_identity(self) -> ModelIdentity:
        """What a --model-url image serves (known before the build: the digest is given)."""
        return ModelIdentity(self.name, self.served_version, self.sha256)


def url_model_name(url: str) -> str:
    """A URL's model name: its file name without `.onnx` (`.../resnet50.onnx` -> resnet50)."""
    stem = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".onnx")
    if not _MODEL_NAME.fullmatch(stem):
        raise ValueError(f"--model-url {url!r} names no model: give --model-name")
    return stem


@dataclass(frozen=True, order=True)
class ModelIdentity:
    """One served model version and the sha256 of its model.onnx."""

    name: str
    version: int
    sha256: str

    def __str__(self) -> str:
        return f"{self.name}/{self.version}@sha256:{self.sha256}"


def models_label(models: Iterable[ModelIdentity]) -> str:
    """The MODELS_LABEL value: every served model, sorted, comma-separated."""
    return ",".join(str(m) for m in sorted(models))


def parse_models_label(text: str) -> list[ModelIdentity]:
    """The models a MODELS_LABEL value names (the inverse of `models_label`)."""
    found = []
    for entry in filter(None, text.split(",")):
        path, _, digest = entry.partition("@sha256:")
        name, _, version = path.rpartition("/")
        if not (_MODEL_NAME.fullmatch(name) and version.isdigit() and _SHA256.fullmatch(digest)):
            raise ValueError(f"model label entry {entry!r}: expected name/version@sha256:<hex>")
        found.append(ModelIdentity(name, int(version), digest))
    return found


def repository_entry(path: str) -> tuple[str, int] | None:
    """(name, version) of a repository path `<name>/<version>/model.onnx`, or None for a path
    the server does not serve (a folder that is no version, like `0`, `01` or `latest`)."""
    entry = _REPOSITORY_ENTRY.fullmatch(path)
    return (entry["name"], int(entry["version"])) if entry else None


def identities_from_sha256sum(output: str) -> list[ModelIdentity]:
    """The models of a repository from `sha256sum` run in it over every */*/model.onnx;
    lines of paths that are no repository entry (see `repository_entry`) are skipped."""
    found = []
    for line in filter(None, map(str.strip, output.splitlines())):
        match = _SHA256SUM_LINE.fullmatch(line)
        if match and (entry := repository_entry(match["path"])):
            found.append(ModelIdentity(*entry, match["hex"]))
    return sorted(found)


@dataclass(frozen=True)
class ModelLayout:
    """How a models folder becomes the image's /models."""

    names: tuple[str, ...]  # the models it serves
    single_file: str | None  # a lone `x.onnx` to place at `<name>/<version>/model.onnx`
    version: int = 1  # the single file's version

    @property
    def repository_path(self) -> str | None:
        """Where the single file goes in the repository (None for a repository)."""
        if not self.single_file:
            return None
        return f"{self.names[0]}/{self.version}/{MODEL_FILE}"


def model_layout(
    folder: str, files: Iterable[str], options: ModelOptions | None = None
) -> ModelLayout:
    """Decide from the folder's file paths (relative, '/'-separated) or say what is wrong;
    `options` name and version a single file (a repository names its own)."""
    options = options or ModelOptions()
    paths = sorted(p.strip("/") for p in files)
    root_models = [p for p in paths if "/" not in p and p.endswith(".onnx")]
    repository = [m for p in paths if (m := _REPOSITORY_ENTRY.fullmatch(p))]
    if root_models and not repository:
        if len(root_models) > 1:
            raise ValueError(
                f"models folder {folder!r} holds several .onnx files ({', '.join(root_models)}): "
                "give one file, or a repository of <name>/<version>/model.onnx"
            )
        name = options.name or root_models[0].removesuffix(".onnx")
        if not _MODEL_NAME.fullmatch(name):
            raise ValueError(
                f"model file {root_models[0]!r} in {folder!r}: name it with letters, digits, "
                "'_', '.' and '-' only, or give --model-name"
            )
        return ModelLayout((name,), root_models[0], options.served_version)
    if not repository:
        raise ValueError(
            f"models folder {folder!r} has no <name>/<version>/model.onnx and no single .onnx "
            f"file (found: {', '.join(paths[:5]) or 'nothing'})"
        )
    if options.name or options.version is not None:
        raise ValueError(
            f"--model-name/--model-version name a single .onnx file; {folder!r} is a "
            "repository whose folders name its models and versions"
        )
    return ModelLayout(tuple(sorted({m["name"] for m in repository})), None)

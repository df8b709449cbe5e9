"""How the pipeline builds an image: `Directory.docker_build` of the repo's own Dockerfiles,
from inputs prepared once per function call (`BuildInputs`).

`docker build` (scripts/, tests) and compose build the very same files and targets with the
same build args (images.py) and the same optional `ca_bundle` BuildKit secret, so a Dagger
build and a local build cannot drift.
"""

from __future__ import annotations

import dataclasses

import dagger
from dagger import dag

from . import validation
from .images import CA_BUNDLE_SECRET_ID, ImageMetadata, dockerfile_base_image
from .models import (
    ModelOptions,
    identities_from_sha256sum,
    model_layout,
    models_label,
)
from .variants import Variant

# Not part of any build context: VCS data, virtualenvs, caches, the engine-generated SDK.
# Every file a Dockerfile COPYs or a check reads must survive this list and .dockerignore
# (tests/pipeline/test_pipeline_context.py).
SOURCE_IGNORE = [
    ".git",
    ".venv",
    "**/.venv*",
    "**/__pycache__",
    "**/.mypy_cache",
    "**/.pytest_cache",
    "**/.ruff_cache",
    "**/.hypothesis",
    "**/*.egg-info",
    ".cache",
    "ci/sdk",
    "bench/results/raw",
    "mutants",
]

# Where a container built with secrets keeps each one mounted (Dagger's docker_build).
CA_BUNDLE_PATH = f"/run/secrets/{CA_BUNDLE_SECRET_ID}"


def docker_build(
    source: dagger.Directory,
    variant: Variant,
    platform: dagger.Platform | None,
    metadata: ImageMetadata,
    ca_bundle: dagger.Secret | None,
) -> dagger.Container:
    """Build `variant` from `source` (the build context) for one platform.

    `platform` None builds for the engine's own platform. The CA bundle is passed by
    reference as a build secret named `ca_bundle`: BuildKit mounts it only while a
    `RUN --mount=type=secret,id=ca_bundle` step runs, so it is in no layer; the container
    Dagger returns would keep it mounted for later execs and services, so it is unmounted.
    """
    spec = variant.spec
    image = source.docker_build(
        dockerfile=spec.dockerfile,
        target=spec.target,
        platform=platform,
        build_args=[dagger.BuildArg(name=k, value=v) for k, v in metadata.build_args().items()],
        secrets=[ca_bundle] if ca_bundle is not None else [],
    )
    if ca_bundle is None:
        return image
    # Twice: the build's own secret mount, and the one a `RUN --mount=type=secret` of the final
    # stage leaves (Dockerfile.basic); `without_mount` drops one secret mount per call.
    return image.without_mount(CA_BUNDLE_PATH).without_mount(CA_BUNDLE_PATH)


async def build_secret(ca_bundle: dagger.Secret | None) -> dagger.Secret | None:
    """The CA bundle under the id the Dockerfiles mount.

    A secret given on the command line is named after a hash of its value, so it is
    re-registered under the name `ca_bundle` that `RUN --mount=type=secret` looks for.
    A CA bundle is public data; the secret type only keeps it out of layers and logs.
    """
    if ca_bundle is None:
        return None
    return dag.set_secret(CA_BUNDLE_SECRET_ID, await ca_bundle.plaintext())


async def build_context(
    source: dagger.Directory, models: dagger.Directory | None, options: ModelOptions
) -> dagger.Directory:
    """The build context: the repository, its models/ replaced by `models` if given (a single
    file placed as `options` name and version it)."""
    if models is None:
        return source
    layout = model_layout("--models", await models.glob("**/*.onnx"), options)
    if layout.single_file is not None and layout.repository_path is not None:
        models = dag.directory().with_file(layout.repository_path, models.file(layout.single_file))
    return source.without_directory("models").with_directory("models", models)


# sha256sum of every model version of the repository mounted at /models.
SHA256SUM_MODELS = 'cd /models && find -L . -path "./*/*/model.onnx" -exec sha256sum {} +'


async def base_image(source: dagger.Directory, metadata: ImageMetadata, variant: Variant) -> str:
    """The image `variant` builds FROM: the override, else its Dockerfile's default."""
    dockerfile = variant.spec.dockerfile
    return metadata.base_image or dockerfile_base_image(
        dockerfile, await source.file(dockerfile).contents()
    )


async def models_identity(
    source: dagger.Directory, context: dagger.Directory, metadata: ImageMetadata
) -> str:
    """The models label of the context's models/: sha256sum in the base image the builds
    use (a model is binary; the module reads no file contents itself)."""
    base = await base_image(source, metadata, Variant.cpu)
    listing = await (
        dag.container()
        .from_(base)
        .with_mounted_directory("/models", context.directory("models"))
        .with_exec(["sh", "-c", SHA256SUM_MODELS])
        .stdout()
    )
    return models_label(identities_from_sha256sum(listing))


@dataclasses.dataclass(frozen=True)
class BuildInputs:
    """What every build of one function call shares, prepared once per call (`prepare`): the
    context, the labels and the CA bundle secret (read and re-registered once)."""

    context: dagger.Directory  # the repository, models/ replaced by --models
    checkout: dagger.Directory  # the repository as is: what the check container mounts
    metadata: ImageMetadata  # the module's labels and base image override
    ca_bundle: dagger.Secret | None  # registered under CA_BUNDLE_SECRET_ID

    @classmethod
    async def prepare(
        cls,
        source: dagger.Directory,
        models: dagger.Directory | None,
        metadata: ImageMetadata,
        ca_bundle: dagger.Secret | None,
        options: ModelOptions | None = None,
        identify_models: bool = True,
    ) -> BuildInputs:
        """Check the model options, make the context and label it with what it serves
        (`identify_models` False: for the check container only, which needs no label)."""
        options = (options or ModelOptions()).checked(models is not None)
        context = await build_context(source, models, options)
        if options.url:
            label = models_label([options.fetched_identity()])
        elif identify_models:
            label = await models_identity(source, context, metadata)
        else:
            label = ""
        metadata = dataclasses.replace(metadata, models=label, fetch=options)
        return cls(context, source, metadata, await build_secret(ca_bundle))

    def image(
        self, variant: Variant, platform: dagger.Platform | str | None, version: str | None = None
    ) -> dagger.Container:
        """`variant` for `platform` (None: the engine's own); `version` overrides the label."""
        metadata = self.metadata
        if version is not None:
            metadata = dataclasses.replace(metadata, version=version)
        target = dagger.Platform(platform) if platform else None
        return docker_build(self.context, variant, target, metadata, self.ca_bundle)

    def native_image(self, variant: Variant) -> dagger.Container:
        """The variant built for the engine's platform (or its only one)."""
        return self.image(variant, validation.platform(variant, None))

    def dev_image(self) -> dagger.Container:
        """The dev image of the checkout itself (no --models, no labels): the check
        container's base."""
        return docker_build(self.checkout, Variant.dev, None, ImageMetadata(), self.ca_bundle)

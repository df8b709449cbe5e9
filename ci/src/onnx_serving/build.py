"""How the pipeline builds an image: `Directory.docker_build` of the repo's own Dockerfiles.

`docker build` (scripts/, tests) and compose build the very same files and targets with the
same build args (images.py) and the same optional `ca_bundle` BuildKit secret, so a Dagger
build and a local build cannot drift.
"""

from __future__ import annotations

import dagger

from .images import CA_BUNDLE_SECRET_ID, ImageMetadata
from .variants import Variant

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

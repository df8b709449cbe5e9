"""How the pipeline builds an image: `Directory.docker_build` of the repo's own Dockerfiles.

`docker build` and compose build the very same files with the same build args and the same
optional `ca_bundle` BuildKit secret, so a Dagger build and a local build cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagger

# The BuildKit secret id the Dockerfiles mount (`--mount=type=secret,id=ca_bundle`).
CA_BUNDLE_SECRET_ID = "ca_bundle"


@dataclass(frozen=True)
class ImageMetadata:
    """Values for the Dockerfiles' OCI-label build args; empty means "keep the default"."""

    version: str = ""
    revision: str = ""
    created: str = ""
    source_url: str = ""
    base_image: str = ""

    def build_args(self) -> list[dagger.BuildArg]:
        """Only the args that are set: an empty arg would blank the Dockerfile's default."""
        pairs = {
            "BASE_IMAGE": self.base_image,
            "VERSION": self.version,
            "REVISION": self.revision,
            "CREATED": self.created,
            "SOURCE_URL": self.source_url,
        }
        return [dagger.BuildArg(name=k, value=v) for k, v in pairs.items() if v]


def docker_build(
    source: dagger.Directory,
    dockerfile: str,
    platform: str | None,
    metadata: ImageMetadata,
    ca_bundle: dagger.Secret | None,
) -> dagger.Container:
    """Build `dockerfile` (a path in `source`, the build context) for one platform.

    `platform` None builds for the engine's own platform.

    The CA bundle is passed by reference as a build secret: the engine mounts it only
    while a `RUN --mount=type=secret,id=ca_bundle` step runs, so it is in no layer. The
    caller names the secret `ca_bundle` (Dagger mounts a build secret under its name).
    """
    return source.docker_build(
        dockerfile=dockerfile,
        platform=dagger.Platform(platform) if platform else None,
        build_args=metadata.build_args(),
        secrets=[ca_bundle] if ca_bundle is not None else [],
    )

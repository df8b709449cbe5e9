"""The onnx-serving pipeline as Dagger functions: the same calls on a laptop and in CI.

Thin on purpose: arguments are checked by `validation`, tags come from `tags`, images from
`build`, and every command a container executes comes from `commands` / `trivy`, the same
lists the repository's tests run for real with Docker.
"""

import asyncio
import datetime as dt
import json
from typing import Annotated

import dagger
import yaml
from dagger import DefaultPath, Doc, Ignore, check, dag, function, object_type

from . import commands, gate, trivy, validation
from .build import docker_build
from .images import CA_BUNDLE_SECRET_ID, CONTAINER_PORT, IMAGE_UID, ImageMetadata
from .tags import image_tags, parse_release
from .toolbox import dev_requirements
from .variants import ALL_DOCKERFILES, PUBLISHED, Variant

# The variant table's names become a Dagger enum: `--variant` is a closed choice --help lists.
dagger.enum_type(Variant)

# Not part of any build context: VCS data, virtualenvs, caches, the engine-generated SDK.
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
]

SERVER_ALIAS = "server"  # the hostname a bound service gets inside the client container
SERVER_URL = f"{SERVER_ALIAS}:{CONTAINER_PORT}"
WORKDIR = "/app"  # the dev image's PYTHONPATH: the checkout is mounted over its baked copy
TRIVY_CACHE = "/cache/trivy"  # a persistent cache volume: the vulnerability DB lives here
SCAN_DIR = "/scan"
CA_BUNDLE_PATH = "/run/secrets/ca_bundle"  # where the dev image's own build mounts it too


@object_type
class OnnxServing:
    """Build, test, lint, scan, publish and serve the ONNX Runtime serving images."""

    source: Annotated[
        dagger.Directory,
        DefaultPath("/"),
        Ignore(SOURCE_IGNORE),
        Doc("The repository to build; defaults to the repository this module lives in."),
    ]
    ca_bundle: Annotated[
        dagger.Secret | None,
        Doc(
            "PEM CA bundle that pip inside the builds trusts, for TLS-intercepting proxies "
            "(e.g. file:///etc/ssl/certs/ca-certificates.crt). Mounted as a build secret "
            "only; it is in no image layer."
        ),
    ] = None
    version: Annotated[
        str,
        Doc(
            "Image version label; default: the Dockerfile's 0.0.0-dev (publish uses the "
            "release tag's version instead)."
        ),
    ] = ""
    revision: Annotated[str, Doc("Source revision label, e.g. the git commit SHA.")] = ""
    created: Annotated[str, Doc("Creation time label (RFC 3339), e.g. the commit time.")] = ""
    source_url: Annotated[str, Doc("Source URL label, e.g. https://github.com/org/repo.")] = ""
    base_image: Annotated[
        str,
        Doc("Base image override, ideally pinned by digest: python:3.11-slim-bookworm@sha256:…"),
    ] = ""

    # ----- images -----------------------------------------------------------------------

    @function
    async def build(
        self,
        variant: Annotated[Variant, Doc("Image variant.")] = Variant.cpu,
        platform: Annotated[
            dagger.Platform | None,
            Doc("Target platform, e.g. linux/arm64; default: the engine's own (gpu: amd64)."),
        ] = None,
    ) -> dagger.Container:
        """Build a serving image from its Dockerfile target, exactly as `docker build` would."""
        chosen = validation.variant(variant)
        target = validation.platform(chosen, platform)
        return self._image(chosen, target, self.version, await self._build_secret())

    @function
    async def serve(
        self,
        variant: Annotated[Variant, Doc("Image variant to serve.")] = Variant.cpu,
    ) -> dagger.Service:
        """Run the image as a service: `dagger call serve up --ports 8000:8000`."""
        chosen = validation.variant(variant)
        return self._service(chosen, await self._build_secret())

    # ----- checks -----------------------------------------------------------------------

    @function
    @check
    async def test(self) -> str:
        """Run the unit tests in the dev image, then smoke-test the built CPU image."""
        secret = await self._build_secret()
        dev = await self._dev_container(secret)
        unit = await dev.with_exec(commands.unit_test_command()).stdout()
        smoke = await (
            dev.with_service_binding(SERVER_ALIAS, self._service(Variant.cpu, secret))
            .with_exec(commands.smoke_command(SERVER_URL))
            .stdout()
        )
        return f"unit tests:\n{_tail(unit)}\nsmoke test (cpu image):\n{_tail(smoke)}"

    @function
    @check
    async def lint(self) -> str:
        """Lint the code (ruff, mypy), every Dockerfile (hadolint) and the CI workflows."""
        dev = await self._dev_container(await self._build_secret())
        steps = {
            "ruff": commands.ruff_command(),
            "mypy": commands.mypy_command(),
            "hadolint": commands.hadolint_command(list(ALL_DOCKERFILES)),
            "zizmor": commands.zizmor_command(),
            "workflows": commands.workflow_check_command(),
        }
        # Independent containers: the engine runs them in parallel; any failure fails lint.
        outputs = await asyncio.gather(*(dev.with_exec(cmd).stdout() for cmd in steps.values()))
        results = zip(steps, outputs, strict=True)
        return "\n".join(f"{name}: ok\n{_tail(out)}" for name, out in results)

    @function
    @check
    async def scan(
        self,
        variant: Annotated[
            Variant | None, Doc("Image variant to scan; default: every published variant.")
        ] = None,
        severity: Annotated[
            str, Doc("Comma list of severities that fail the scan, e.g. HIGH,CRITICAL.")
        ] = gate.DEFAULT_SEVERITIES,
        ignore_unfixed: Annotated[
            bool, Doc("Do not fail on vulnerabilities that have no fixed version yet.")
        ] = False,
    ) -> str:
        """Scan images with Trivy (vulnerabilities, secrets, misconfigurations, licenses).

        Fails when a finding at the given severities is neither fixed nor listed, with a
        reason and an expiry date, in .trivyignore.yaml.
        """
        chosen = [validation.variant(variant)] if variant is not None else list(PUBLISHED)
        severities = gate.parse_severities(severity)
        ignores = gate.parse_ignore_entries(
            yaml.safe_load(await self.source.file(".trivyignore.yaml").contents())
        )
        today = dt.date.today()
        secret = await self._build_secret()
        verdicts = []
        for v in chosen:
            image = self._image(v, validation.platform(v, None), self.version, secret)
            report = await _scan_report(image, today)
            verdicts.append(
                gate.evaluate(
                    json.loads(report),
                    severities=severities,
                    ignore_unfixed=ignore_unfixed,
                    ignores=ignores,
                    today=today,
                    artifact=f"{v.value} image",
                )
            )
        summary = "\n".join(verdict.report() for verdict in verdicts)
        if not all(verdict.passed for verdict in verdicts):
            raise RuntimeError(summary)
        return summary

    @function
    async def sbom(
        self,
        variant: Annotated[Variant, Doc("Image variant to describe.")] = Variant.cpu,
    ) -> dagger.File:
        """The image's CycloneDX SBOM (JSON): `dagger call sbom export --path sbom.cdx.json`."""
        chosen = validation.variant(variant)
        secret = await self._build_secret()
        image = self._image(chosen, validation.platform(chosen, None), self.version, secret)
        sbom_path = f"{SCAN_DIR}/sbom.cdx.json"
        return (
            _trivy_container(image)
            .with_exec(trivy.sbom_command(f"{SCAN_DIR}/image.tar", sbom_path))
            .file(sbom_path)
        )

    # ----- release ----------------------------------------------------------------------

    # The SDK's overloads of `function` omit `cache` (0.21.11), hence the ignore.
    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def publish(
        self,
        tag: Annotated[str, Doc("Release tag, e.g. v1.2.3, v1.2 or v1.3.0-rc.1.")],
        registry: Annotated[
            str, Doc("Registry host[:port], e.g. ghcr.io, docker.io, localhost:5000.")
        ] = "ghcr.io",
        repository: Annotated[
            str, Doc("Repository path in the registry, e.g. my-org/onnx-serving.")
        ] = "onnx-serving/onnx-serving",
        username: Annotated[str | None, Doc("Registry user name (with --password).")] = None,
        password: Annotated[
            dagger.Secret | None,
            Doc("Registry token as a secret, e.g. env://REGISTRY_TOKEN (with --username)."),
        ] = None,
        variants: Annotated[
            list[Variant] | None, Doc("Variants to publish; default: every published variant.")
        ] = None,
    ) -> str:
        """Publish each variant, for each of its platforms, under every tag of the release.

        Tags follow docs/REGISTRY_GUIDE.md; a variant's images on several platforms are one
        multi-platform index. Returns one `ref@sha256:…` line per published tag.
        """
        # Everything is checked before the first build or push.
        host = validation.registry(registry)
        path = validation.repository(repository, host)
        validation.credentials(username, password is not None)
        chosen = validation.published_variants(variants)
        release = parse_release(tag)
        addresses = {
            v: [f"{host}/{path}:{t}" for t in image_tags(tag, v.spec.tag_suffix)] for v in chosen
        }

        secret = await self._build_secret()
        published: list[str] = []
        for v in chosen:
            platforms = [dagger.Platform(p) for p in v.spec.platforms]
            images = [self._image(v, p, release.version, secret) for p in platforms]
            publisher = dag.container()
            if username is not None and password is not None:
                publisher = publisher.with_registry_auth(host, username, password)
            for address in addresses[v]:
                published.append(await publisher.publish(address, platform_variants=images))
        return "\n".join(published)

    # ----- benchmark --------------------------------------------------------------------

    @function
    async def benchmark(
        self,
        variant: Annotated[Variant, Doc("Image variant to load.")] = Variant.cpu,
        requests: Annotated[int, Doc("Total number of inference requests.")] = 2000,
        concurrency: Annotated[int, Doc("Concurrent keep-alive connections.")] = 8,
        batch: Annotated[int, Doc("Rows per request.")] = 1,
    ) -> str:
        """A short load test of the served image: req/s, rows/s, p50 and p99 latency."""
        chosen = validation.variant(variant)
        command = commands.loadgen_command(
            SERVER_URL,
            requests=validation.positive("requests", requests),
            concurrency=validation.positive("concurrency", concurrency),
            batch=validation.positive("batch", batch),
        )
        secret = await self._build_secret()
        dev = await self._dev_container(secret)
        return await (
            dev.with_service_binding(SERVER_ALIAS, self._service(chosen, secret))
            .with_exec(command)
            .stdout()
        )

    # ----- helpers (not exposed) --------------------------------------------------------

    def _image(
        self,
        chosen: Variant,
        platform: str | None,
        version: str,
        secret: dagger.Secret | None,
    ) -> dagger.Container:
        metadata = ImageMetadata(
            version=version,
            revision=self.revision,
            created=self.created,
            source_url=self.source_url,
            base_image=self.base_image,
        )
        target = dagger.Platform(platform) if platform else None
        return docker_build(self.source, chosen, target, metadata, secret)

    def _service(self, chosen: Variant, secret: dagger.Secret | None) -> dagger.Service:
        """The variant's image running its own entrypoint, its port exposed."""
        image = self._image(chosen, validation.platform(chosen, None), self.version, secret)
        return image.with_exposed_port(CONTAINER_PORT).as_service(use_entrypoint=True)

    async def _dev_container(self, secret: dagger.Secret | None) -> dagger.Container:
        """The dev image plus the pyproject `dev` tools, the checkout at WORKDIR.

        Tests, linters and clients run here. The tools are installed before the checkout is
        mounted, so the install is cached until pyproject.toml's dev list changes.
        """
        tools = dev_requirements(await self.source.file("pyproject.toml").contents())
        dev = docker_build(self.source, Variant.dev, None, ImageMetadata(), secret)
        installer = dev.with_user("root")
        if secret is not None:  # pip trusts the proxy's CA; mounted for this step only
            installer = installer.with_mounted_secret(CA_BUNDLE_PATH, secret).with_env_variable(
                "PIP_CERT", CA_BUNDLE_PATH
            )
        installed = installer.with_exec(commands.pip_install_command(tools))
        if secret is not None:
            installed = installed.without_env_variable("PIP_CERT").without_mount(CA_BUNDLE_PATH)
        return (
            installed.with_user(str(IMAGE_UID))
            .with_mounted_directory(WORKDIR, self.source, owner=str(IMAGE_UID))
            .with_workdir(WORKDIR)
        )

    async def _build_secret(self) -> dagger.Secret | None:
        """The CA bundle under the id the Dockerfiles mount.

        A secret given on the command line is named after a hash of its value, so it is
        re-registered under the name `ca_bundle` that `RUN --mount=type=secret` looks for.
        A CA bundle is public data; the secret type only keeps it out of layers and logs.
        """
        if self.ca_bundle is None:
            return None
        return dag.set_secret(CA_BUNDLE_SECRET_ID, await self.ca_bundle.plaintext())


def _trivy_container(image: dagger.Container) -> dagger.Container:
    """Trivy at the pinned version with the image tarball mounted."""
    return (
        dag.container()
        .from_(trivy.TRIVY_IMAGE)
        .with_mounted_file(f"{SCAN_DIR}/image.tar", image.as_tarball())
    )


async def _scan_report(image: dagger.Container, today: dt.date) -> str:
    """Trivy's JSON report on `image`, with a fresh-today vulnerability DB from a cache volume."""
    report_path = f"{SCAN_DIR}/report.json"
    command = trivy.image_scan_command(
        f"{SCAN_DIR}/image.tar",
        report_path,
        scanners=("vuln", *trivy.OFFLINE_SCANNERS),
        cache_dir=TRIVY_CACHE,
    )
    return await (
        _trivy_container(image)
        .with_mounted_cache(TRIVY_CACHE, dag.cache_volume("onnx-serving-trivy-db"))
        # The date busts the exec cache once a day, so the DB download re-runs daily.
        .with_env_variable("TRIVY_DB_DAY", today.isoformat())
        .with_exec(commands.trivy_db_command(TRIVY_CACHE))
        .with_exec(command)
        .file(report_path)
        .contents()
    )


def _tail(text: str, lines: int = 15) -> str:
    """The last lines of a tool's output (pytest's summary is at the end)."""
    return "\n".join(text.strip().splitlines()[-lines:])

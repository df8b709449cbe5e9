"""The onnx-serving pipeline as Dagger functions: the same calls on a laptop and in CI.

Thin on purpose: arguments are checked by `validation`, tags come from `tags`, images from
`build`, and every command a container executes comes from `commands` / `trivy`, the same
lists the repository's tests and scripts run for real with Docker.
"""

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from typing import Annotated

import anyio
import dagger
import yaml
from dagger import DefaultPath, Doc, Ignore, check, dag, function, object_type

from . import commands, emulation, gate, trivy, validation
from . import manifests as deploy_manifests
from .build import CA_BUNDLE_PATH, docker_build
from .images import (
    CA_BUNDLE_SECRET_ID,
    CONTAINER_PORT,
    IMAGE_UID,
    ImageMetadata,
    dockerfile_base_image,
)
from .models import model_layout
from .tags import edge_tags, git_release_tags, image_tags, parse_release
from .variants import ALL_DOCKERFILES, PUBLISHED, Variant

# Closed choices that --help lists: the variant table's names, the gate's severities.
dagger.enum_type(Variant)
dagger.enum_type(gate.Severity)

# Arguments several functions share, documented once.
Models = Annotated[
    dagger.Directory | None,
    Doc("Model repository (<name>/<version>/model.onnx) or one .onnx file to bake in."),
]
Registry = Annotated[str, Doc("Registry host[:port], e.g. ghcr.io, docker.io, localhost:5000.")]
Repository = Annotated[str, Doc("Repository path in the registry, e.g. my-org/onnx-serving.")]
Username = Annotated[str | None, Doc("Registry user name (with --password).")]
Password = Annotated[
    dagger.Secret | None,
    Doc("Registry token as a secret, e.g. env://REGISTRY_TOKEN (with --username)."),
]
MinimumSeverity = Annotated[
    gate.Severity, Doc("The lowest severity that fails the scan (higher ones fail it too).")
]
IgnoreUnfixed = Annotated[
    bool, Doc("Do not fail on vulnerabilities that have no fixed version yet.")
]

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

SERVER_ALIAS = "server"  # the hostname a bound service gets inside the client container
SERVER_URL = f"{SERVER_ALIAS}:{CONTAINER_PORT}"
WORKDIR = "/app"  # the dev image's PYTHONPATH: the checkout is mounted over its baked copy
TRIVY_CACHE = "/cache/trivy"  # a persistent, LOCKED cache volume: the vulnerability DB
SCAN_DIR = "/scan"
SUITE_DIR = "/src"  # where the test check copies the checkout
DOCKER_STATE = "/var/lib/docker"  # the test check's own engine keeps images and build cache


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
    revision: Annotated[str, Doc("Source revision label: the full git commit SHA.")] = ""
    created: Annotated[str, Doc("Creation time label (RFC 3339), e.g. the commit time.")] = ""
    source_url: Annotated[str, Doc("Source URL label, e.g. https://github.com/org/repo.")] = ""
    base_image: Annotated[
        str,
        Doc("Base image override, ideally pinned by digest: python:3.11-slim-bookworm@sha256:…"),
    ] = ""
    offline_scan: Annotated[
        bool,
        Doc(
            "Scan without Trivy's vulnerability DB, for runners with no route to its registry: "
            "misconfig, secret and license scanners only; every report says so."
        ),
    ] = False

    # ----- images -----------------------------------------------------------------------

    @function
    async def build(
        self,
        variant: Annotated[Variant, Doc("Image variant.")] = Variant.cpu,
        platform: Annotated[
            dagger.Platform | None,
            Doc("Target platform, e.g. linux/arm64; default: the engine's own (gpu: amd64)."),
        ] = None,
        models: Models = None,
    ) -> dagger.Container:
        """Build a serving image from its Dockerfile target, exactly as `docker build` would."""
        chosen = validation.variant(variant)
        target = validation.platform(chosen, platform)
        context = await self._context(models)
        return self._image(chosen, context, target, self.version, await self._build_secret())

    @function
    async def serve(
        self,
        variant: Annotated[Variant, Doc("Image variant to serve.")] = Variant.cpu,
        models: Models = None,
    ) -> dagger.Service:
        """Run the image as a service: `dagger call serve up --ports 8000:8000`."""
        chosen = validation.variant(variant)
        context = await self._context(models)
        image = self._native_image(chosen, context, await self._build_secret())
        return _service(image)

    # ----- checks -----------------------------------------------------------------------

    @function
    @check
    async def test(
        self,
        models: Annotated[
            dagger.Directory | None,
            Doc("Model repository or one .onnx file to bake into the smoke-tested image."),
        ] = None,
        pytest_args: Annotated[
            list[str] | None,
            Doc(
                "pytest arguments for a selection, e.g. tests/service,-m,not docker (default: all)."
            ),
        ] = None,
    ) -> str:
        """Run the test suite as CI does (REQUIRE_DOCKER=1 ./scripts/test.sh, with a Docker
        engine of its own), then smoke-test the cpu image this module builds."""
        context = await self._context(models)
        secret = await self._build_secret()
        suite = await (await self._suite(secret, pytest_args or [])).stdout()
        image = self._native_image(Variant.cpu, context, secret)
        smoke = await self._smoke(await self._checker(secret), image, ready_only=False)
        return f"test suite:\n{_tail(suite)}\nsmoke test (cpu image):\n{_tail(smoke)}"

    @function
    @check
    async def lint(self) -> str:
        """Lint the code (ruff, mypy), every Dockerfile (hadolint) and the CI workflows."""
        checker = await self._checker(await self._build_secret())
        steps = {
            "ruff": commands.ruff_command(),
            "mypy": commands.mypy_command(),
            "hadolint": commands.hadolint_command(list(ALL_DOCKERFILES)),
            "zizmor": commands.zizmor_command(),
            "workflows": commands.workflow_check_command(),
        }
        # Independent containers: the engine runs them in parallel; any failure fails lint.
        outputs = await asyncio.gather(*(checker.with_exec(cmd).stdout() for cmd in steps.values()))
        results = zip(steps, outputs, strict=True)
        return "\n".join(f"{name}: ok\n{_tail(out)}" for name, out in results)

    # A verdict depends on today's vulnerability DB and ignore-file dates: never reuse one.
    # The SDK's overloads of `function` omit `cache` (0.21.11), hence the ignores.
    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    @check
    async def scan(
        self,
        variant: Annotated[
            Variant | None, Doc("Image variant to scan; default: every published variant.")
        ] = None,
        models: Models = None,
        severity: MinimumSeverity = gate.Severity.HIGH,
        ignore_unfixed: IgnoreUnfixed = False,
    ) -> str:
        """Scan images with Trivy (vulnerabilities, secrets, misconfigurations, licenses).

        Fails when a finding at the given severities is neither fixed nor listed, with a
        reason and an expiry date, in .trivyignore.yaml.
        """
        chosen = [validation.variant(variant)] if variant is not None else list(PUBLISHED)
        judge = await self._judge(severity, ignore_unfixed)
        context = await self._context(models)
        secret = await self._build_secret()
        checker = await self._checker(secret)
        images = {f"{v} image": self._native_image(v, context, secret) for v in chosen}
        return await _gated(checker, images, judge)

    @function
    async def sbom(
        self,
        variant: Annotated[Variant, Doc("Image variant to describe.")] = Variant.cpu,
        models: Models = None,
    ) -> dagger.File:
        """The image's CycloneDX SBOM (JSON): `dagger call sbom export --path sbom.cdx.json`."""
        chosen = validation.variant(variant)
        context = await self._context(models)
        secret = await self._build_secret()
        image = self._native_image(chosen, context, secret)
        return _sbom(await self._checker(secret), image)

    # ----- release ----------------------------------------------------------------------

    # The SDK's overloads of `function` omit `cache` (0.21.11), hence the ignore.
    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def publish(
        self,
        tag: Annotated[
            str, Doc("Release tag, e.g. v1.2.3, v1.2 or v1.3.0-rc.1 (or use --edge).")
        ] = "",
        edge: Annotated[
            bool, Doc("Publish a main-branch build as edge and sha-<7 hex> (needs --revision).")
        ] = False,
        registry: Registry = "ghcr.io",
        repository: Repository = "onnx-serving/onnx-serving",
        username: Username = None,
        password: Password = None,
        variants: Annotated[
            list[Variant] | None, Doc("Variants to publish; default: every published variant.")
        ] = None,
        models: Models = None,
        oidc_request_url: Annotated[
            dagger.Secret | None,
            Doc("Sign keylessly with cosign: env://ACTIONS_ID_TOKEN_REQUEST_URL (Actions)."),
        ] = None,
        oidc_request_token: Annotated[
            dagger.Secret | None,
            Doc("With --oidc-request-url: env://ACTIONS_ID_TOKEN_REQUEST_TOKEN."),
        ] = None,
        git: Annotated[
            dagger.Directory | None,
            DefaultPath("/.git"),
            Doc("The repository's .git: its release tags decide whether latest, 1 and 1.2 move."),
        ] = None,
        manifests: Annotated[
            bool, Doc("Also print the Kubernetes and KServe manifests for the pushed digests.")
        ] = False,
    ) -> str:
        """Build, verify, then push: each variant and platform is built once, smoke-tested
        (emulated platforms: started and ready) and scanned at the gate, and only those very
        images are pushed, under every tag of the release (docs/REGISTRY_GUIDE.md). With
        OIDC secrets each pushed digest is signed and gets its SBOMs as attestations.
        Returns one `ref@sha256:…` line per published tag.
        """
        # Everything is checked before the first build or push.
        host = validation.registry(registry)
        path = validation.repository(repository, host)
        validation.credentials(username, password is not None)
        signing = validation.signing(
            oidc_request_url is not None, oidc_request_token is not None, password is not None
        )
        chosen = validation.published_variants(variants)
        version, tags_of = await self._release(tag, edge, git)
        addresses = {v: [f"{host}/{path}:{t}" for t in tags_of(v)] for v in chosen}
        context = await self._context(models)

        secret = await self._build_secret()
        native = await dag.default_platform()
        images = {
            (v, p): self._image(v, context, p, version, secret)
            for v in chosen
            for p in (dagger.Platform(name) for name in v.spec.platforms)
        }
        checker = await self._checker(secret)
        judge = await self._judge(gate.Severity.HIGH, False)
        # Verify: nothing is pushed unless every image passed both.
        await asyncio.gather(
            *(
                self._smoke(checker, _emulatable(image, p) if p != native else image, p != native)
                for (_, p), image in images.items()
            ),
            _gated(checker, {f"{v} image ({p})": image for (v, p), image in images.items()}, judge),
        )

        publisher = dag.container()
        if username is not None and password is not None:
            publisher = publisher.with_registry_auth(host, username, password)
        published: dict[str, str] = {}

        async def push(address: str, platform_variants: list[dagger.Container]) -> None:
            published[address] = await publisher.publish(
                address, platform_variants=platform_variants
            )

        async with anyio.create_task_group() as pushes:
            for v in chosen:
                verified = [images[(v, dagger.Platform(p))] for p in v.spec.platforms]
                for address in addresses[v]:
                    pushes.start_soon(push, address, verified)
        lines = [published[a] for v in chosen for a in addresses[v]]

        if signing and oidc_request_url and oidc_request_token and username and password:
            signer = (
                _signer(checker, host, username, password)
                .with_secret_variable("ACTIONS_ID_TOKEN_REQUEST_URL", oidc_request_url)
                .with_secret_variable("ACTIONS_ID_TOKEN_REQUEST_TOKEN", oidc_request_token)
            )
            for v in chosen:
                digest_ref = published[addresses[v][0]]
                sboms = [_sbom(checker, images[(v, dagger.Platform(p))]) for p in v.spec.platforms]
                await _sign(signer, digest_ref, sboms)
        if manifests:
            # Every tag of a variant names one digest: its first tag stands for it.
            rendered = deploy_manifests.render_published(published[addresses[v][0]] for v in chosen)
            lines += [f"---\n# {name}\n{text}" for name, text in rendered.items()]
        return "\n".join(lines)

    # A weekly verdict on what users pull today: never cached.
    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def scan_published(
        self,
        registry: Registry = "ghcr.io",
        repository: Repository = "onnx-serving/onnx-serving",
        tags: Annotated[
            list[str] | None,
            Doc("Tags to scan, each with every variant's suffix (default: latest), e.g. edge."),
        ] = None,
        username: Username = None,
        password: Password = None,
        severity: MinimumSeverity = gate.Severity.HIGH,
        ignore_unfixed: IgnoreUnfixed = False,
    ) -> str:
        """Pull what is published (every published variant under each tag) and scan exactly
        those images; fails with the list of findings."""
        host = validation.registry(registry)
        path = validation.repository(repository, host)
        validation.credentials(username, password is not None)
        wanted = [validation.floating_tag(t) for t in tags or ["latest"]]
        judge = await self._judge(severity, ignore_unfixed)
        images = {}
        for tag in wanted:
            for v in PUBLISHED:
                address = f"{host}/{path}:{tag}{v.spec.tag_suffix}"
                puller = dag.container(platform=dagger.Platform(v.spec.platforms[0]))
                if username is not None and password is not None:
                    puller = puller.with_registry_auth(host, username, password)
                images[address] = puller.from_(address)
        return await _gated(await self._checker(await self._build_secret()), images, judge)

    @function
    async def manifests(
        self,
        image: Annotated[
            str,
            Doc(
                "The published image by digest: REGISTRY/REPOSITORY[:TAG]@sha256:<64 hex>, "
                "e.g. a line `publish` printed (the tag is dropped)."
            ),
        ],
        variant: Annotated[Variant, Doc("The image's variant.")] = Variant.cpu,
        storage_uri: Annotated[
            str,
            Doc(
                "The InferenceService's model repository (<name>/<version>/model.onnx), "
                "e.g. s3://bucket/path or pvc://claim/path."
            ),
        ] = deploy_manifests.DEFAULT_STORAGE_URI,
        namespace: Annotated[
            str, Doc("The namespace of every resource.")
        ] = deploy_manifests.DEFAULT_NAMESPACE,
    ) -> dagger.Directory:
        """Kubernetes and KServe manifests for a published image digest (docs/DEPLOY.md):
        <variant>/kubernetes.yaml (Deployment, Service, HorizontalPodAutoscaler,
        PodDisruptionBudget) and <variant>/kserve/{servingruntime,inferenceservice}.yaml.
        `dagger call manifests --image REF@sha256:… export --path deploy-out`.
        """
        files = deploy_manifests.render(image, validation.variant(variant), storage_uri, namespace)
        out = dag.directory()
        for path, text in files.items():
            out = out.with_new_file(path, text)
        return out

    # ----- benchmark --------------------------------------------------------------------

    # Numbers of this run, on this engine, now: never cached.
    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def benchmark(
        self,
        variant: Annotated[Variant, Doc("Image variant to load.")] = Variant.cpu,
        requests: Annotated[int, Doc("Total number of inference requests.")] = 2000,
        concurrency: Annotated[int, Doc("Concurrent keep-alive connections.")] = 8,
        batch: Annotated[int, Doc("Rows per request.")] = 1,
        models: Models = None,
        model: Annotated[str, Doc("Model to load; default: the first one served.")] = "",
    ) -> str:
        """A short load test of the served image: req/s, rows/s, p50 and p99 latency."""
        chosen = validation.variant(variant)
        command = commands.loadgen_command(
            SERVER_URL,
            model,
            requests=validation.positive("requests", requests),
            concurrency=validation.positive("concurrency", concurrency),
            batch=validation.positive("batch", batch),
        )
        context = await self._context(models)
        secret = await self._build_secret()
        image = self._native_image(chosen, context, secret)
        checker = await self._checker(secret)
        return await (
            checker.with_service_binding(SERVER_ALIAS, _service(image))
            # cache="never" covers the call, not its steps: a new value makes the load run anew.
            .with_env_variable("BENCHMARK_RUN", dt.datetime.now(dt.UTC).isoformat())
            .with_exec(command)
            .stdout()
        )

    # ----- helpers (not exposed) --------------------------------------------------------

    async def _context(self, models: dagger.Directory | None) -> dagger.Directory:
        """The build context: the repository, its models/ replaced by `models` if given."""
        if models is None:
            return self.source
        layout = model_layout("--models", await models.glob("**/*.onnx"))
        if layout.single_file is not None and layout.repository_path is not None:
            models = dag.directory().with_file(
                layout.repository_path, models.file(layout.single_file)
            )
        return self.source.without_directory("models").with_directory("models", models)

    def _image(
        self,
        chosen: Variant,
        context: dagger.Directory,
        platform: dagger.Platform | str | None,
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
        return docker_build(context, chosen, target, metadata, secret)

    def _native_image(
        self, chosen: Variant, context: dagger.Directory, secret: dagger.Secret | None
    ) -> dagger.Container:
        """The variant built for the engine's platform (or its only one)."""
        return self._image(chosen, context, validation.platform(chosen, None), self.version, secret)

    async def _checker(self, secret: dagger.Secret | None) -> dagger.Container:
        """The check container: the dev image plus requirements/test.lock (hashed), as the
        image's user, the checkout at WORKDIR. Tests, linters, scanners and clients run here.

        The tools are installed before the checkout is mounted, so the install is cached until
        the lock changes; the CA bundle is mounted for that one step.
        """
        dev = docker_build(self.source, Variant.dev, None, ImageMetadata(), secret)
        installer = dev.with_user("root").with_file(
            f"/tmp/{commands.TEST_LOCK}", self.source.file(commands.TEST_LOCK)
        )
        if secret is not None:
            installer = installer.with_mounted_secret(CA_BUNDLE_PATH, secret).with_env_variable(
                "PIP_CERT", CA_BUNDLE_PATH
            )
        installed = installer.with_exec(
            commands.pip_install_lock_command(f"/tmp/{commands.TEST_LOCK}")
        )
        if secret is not None:
            installed = installed.without_env_variable("PIP_CERT").without_mount(CA_BUNDLE_PATH)
        return (
            installed.with_user(str(IMAGE_UID))
            .with_mounted_directory(WORKDIR, self.source, owner=str(IMAGE_UID))
            .with_workdir(WORKDIR)
            .with_env_variable("PYTHONPATH", f"{WORKDIR}:{WORKDIR}/ci/src")
        )

    async def _suite(
        self, secret: dagger.Secret | None, pytest_args: list[str]
    ) -> dagger.Container:
        """The README's test command in a Debian container with its own Docker engine: as
        root, with the capabilities dockerd needs, its state in a cache volume. The container
        is the cpu image's own base (Debian with Python 3.11)."""
        dockerfile = Variant.cpu.spec.dockerfile
        base = self.base_image or dockerfile_base_image(
            dockerfile, await self.source.file(dockerfile).contents()
        )
        suite = (
            dag.container()
            .from_(base)
            # PRIVATE: two runs at once on one engine must not share one dockerd data root.
            .with_mounted_cache(
                DOCKER_STATE,
                dag.cache_volume("onnx-serving-test-docker"),
                sharing=dagger.CacheSharingMode.PRIVATE,
            )
            .with_directory(SUITE_DIR, self.source)
            .with_workdir(SUITE_DIR)
        )
        for name, value in commands.TEST_SUITE_ENV.items():
            suite = suite.with_env_variable(name, value)
        if secret is not None:  # pip and the image builds trust the proxy's CA
            suite = (
                suite.with_mounted_secret(CA_BUNDLE_PATH, secret)
                .with_env_variable("CA_BUNDLE", CA_BUNDLE_PATH)
                .with_env_variable("PIP_CERT", CA_BUNDLE_PATH)
            )
        command = [*commands.TEST_SUITE_COMMAND, *pytest_args]
        return suite.with_exec(command, insecure_root_capabilities=True)

    async def _smoke(
        self, checker: dagger.Container, image: dagger.Container, ready_only: bool
    ) -> str:
        """The smoke client in the check container against `image` served as a service."""
        return await (
            checker.with_service_binding(SERVER_ALIAS, _service(image))
            .with_exec(commands.smoke_command(SERVER_URL, ready_only=ready_only))
            .stdout()
        )

    async def _judge(self, severity: gate.Severity | str, ignore_unfixed: bool) -> "_Judge":
        """The gate's settings, checked before anything is built: threshold and ignore file."""
        severities = gate.severities_at_least(severity)
        ignores = gate.parse_ignore_entries(
            yaml.safe_load(await self.source.file(".trivyignore.yaml").contents())
        )
        return _Judge(severities, ignore_unfixed, ignores, dt.date.today(), self.offline_scan)

    async def _release(
        self, tag: str, edge: bool, git: dagger.Directory | None
    ) -> tuple[str, Callable[[Variant], list[str]]]:
        """The version label and the tags per variant of a release or an edge build."""
        if bool(tag) == edge:
            raise ValueError("give either --tag vX.Y.Z (a release) or --edge (a main build)")
        if edge:
            revision = self.revision
            edge_tags(revision)  # a one-line error before anything runs
            return self.version or f"0.0.0-edge.{revision[:7]}", lambda v: edge_tags(
                revision, v.spec.tag_suffix
            )
        release = parse_release(tag)
        released = await _release_tags(git) if git is not None else []
        return release.version, lambda v: image_tags(tag, v.spec.tag_suffix, released)

    async def _build_secret(self) -> dagger.Secret | None:
        """The CA bundle under the id the Dockerfiles mount.

        A secret given on the command line is named after a hash of its value, so it is
        re-registered under the name `ca_bundle` that `RUN --mount=type=secret` looks for.
        A CA bundle is public data; the secret type only keeps it out of layers and logs.
        """
        if self.ca_bundle is None:
            return None
        return dag.set_secret(CA_BUNDLE_SECRET_ID, await self.ca_bundle.plaintext())


# ----- module-level helpers -----------------------------------------------------------------


class _Judge:
    """A gate threshold and ignore list, fixed for one call."""

    def __init__(
        self,
        severities: frozenset[str],
        ignore_unfixed: bool,
        ignores: list[gate.IgnoreEntry],
        today: dt.date,
        offline: bool = False,
    ) -> None:
        self.severities, self.ignore_unfixed = severities, ignore_unfixed
        self.ignores, self.today, self.offline = ignores, today, offline

    def verdict(self, report: str, artifact: str) -> gate.Verdict:
        return gate.evaluate(
            json.loads(report),
            severities=self.severities,
            ignore_unfixed=self.ignore_unfixed,
            ignores=self.ignores,
            today=self.today,
            artifact=artifact,
        )


def _emulatable(image: dagger.Container, platform: dagger.Platform) -> dagger.Container:
    """`image` as it can start under emulation (emulation.py says why)."""
    cpuinfo = emulation.emulated_cpuinfo(str(platform))
    if cpuinfo is None:
        return image
    fake = dag.directory().with_new_file("cpuinfo", cpuinfo).file("cpuinfo")
    return image.with_mounted_file(emulation.CPUINFO_PATH, fake)


def _service(image: dagger.Container) -> dagger.Service:
    """An image running its own entrypoint, its port exposed."""
    return image.with_exposed_port(CONTAINER_PORT).as_service(use_entrypoint=True)


def _with_tarball(checker: dagger.Container, image: dagger.Container) -> dagger.Container:
    """The image's tarball in SCAN_DIR, both owned by the check container's user: a mount
    point's missing parent would be created root-owned (reports are written beside it), and
    the engine writes a tarball root-owned with mode 0600."""
    owner = str(IMAGE_UID)
    return checker.with_directory(SCAN_DIR, dag.directory(), owner=owner).with_mounted_file(
        f"{SCAN_DIR}/image.tar", image.as_tarball(), owner=owner
    )


async def _scan_report(checker: dagger.Container, image: dagger.Container, judge: _Judge) -> str:
    """Trivy's JSON report on `image`, with a fresh-today vulnerability DB from a cache volume
    (offline: the DB-free scanners only)."""
    report_path = f"{SCAN_DIR}/report.json"
    scanners = trivy.OFFLINE_SCANNERS if judge.offline else ("vuln", *trivy.OFFLINE_SCANNERS)
    command = trivy.image_scan_command(
        f"{SCAN_DIR}/image.tar", report_path, scanners=scanners, cache_dir=TRIVY_CACHE
    )
    scanner = _with_tarball(checker, image).with_mounted_cache(
        TRIVY_CACHE,
        dag.cache_volume("onnx-serving-trivy-db"),
        sharing=dagger.CacheSharingMode.LOCKED,
        owner=str(IMAGE_UID),
    )
    if not judge.offline:
        # The date busts the exec cache once a day, so the DB download re-runs daily.
        scanner = scanner.with_env_variable("TRIVY_DB_DAY", judge.today.isoformat()).with_exec(
            commands.trivy_db_command(TRIVY_CACHE)
        )
    return await scanner.with_exec(command).file(report_path).contents()


async def _gated(
    checker: dagger.Container, images: dict[str, dagger.Container], judge: _Judge
) -> str:
    """Scan every image (concurrently) and judge it; raises with every finding on a FAIL."""
    reports = await asyncio.gather(
        *(_scan_report(checker, image, judge) for image in images.values())
    )
    verdicts = [judge.verdict(r, name) for name, r in zip(images, reports, strict=True)]
    summary = "\n".join(verdict.report() for verdict in verdicts)
    if judge.offline:
        summary += "\nvulnerabilities NOT scanned (--offline-scan): misconfig, secret, license only"
    if not all(verdict.passed for verdict in verdicts):
        raise RuntimeError(summary)
    return summary


def _sbom(checker: dagger.Container, image: dagger.Container) -> dagger.File:
    sbom_path = f"{SCAN_DIR}/sbom.cdx.json"
    return (
        _with_tarball(checker, image)
        # Trivy needs a cache folder it can write: the check user's HOME (/nonexistent) is none.
        .with_exec(
            trivy.sbom_command(f"{SCAN_DIR}/image.tar", sbom_path, cache_dir=f"{SCAN_DIR}/cache")
        )
        .file(sbom_path)
    )


def _signer(
    checker: dagger.Container, host: str, username: str, password: dagger.Secret
) -> dagger.Container:
    """The check container with the pinned cosign, logged in to the registry."""
    cosign = dag.container().from_(commands.COSIGN_IMAGE).file(commands.COSIGN_BINARY)
    return (
        checker.with_file("/tmp/cosign/cosign", cosign, permissions=0o755)
        .with_env_variable("PATH", "/tmp/cosign:$PATH", expand=True)
        .with_env_variable("HOME", "/tmp")
        .with_env_variable("REGISTRY", host)
        .with_env_variable("REGISTRY_USERNAME", username)
        .with_secret_variable("REGISTRY_PASSWORD", password)
        .with_exec(["sh", "-c", commands.COSIGN_LOGIN_SCRIPT])
    )


async def _sign(signer: dagger.Container, reference: str, sboms: list[dagger.File]) -> None:
    """Sign a pushed digest and attach each platform's SBOM as an attestation."""
    signed = signer.with_exec(commands.cosign_sign_command(reference))
    for n, sbom in enumerate(sboms):
        path = f"/tmp/sbom-{n}.cdx.json"
        signed = signed.with_file(path, sbom).with_exec(
            commands.cosign_attest_command(reference, path)
        )
    await signed.sync()


async def _release_tags(git: dagger.Directory) -> list[str]:
    """The tag names of a .git directory (packed and loose)."""
    loose = await git.glob("refs/tags/**")
    packed = await git.glob("packed-refs")
    text = await git.file("packed-refs").contents() if packed else ""
    names = [p.removeprefix("refs/tags/") for p in loose if not p.endswith("/")]
    return git_release_tags(text, names)


def _tail(text: str, lines: int = 15) -> str:
    """The last lines of a tool's output (pytest's summary is at the end)."""
    return "\n".join(text.strip().splitlines()[-lines:])

"""The onnx-serving pipeline as Dagger functions: the same calls on a laptop and in CI.

Thin on purpose: arguments are checked by `validation`, images come from `build` (inputs
prepared once per call), the containers tools run in from `containers`, scans and their gate
from `scanning`, publish's steps from `release` (signing: `signing`), manifests from
`manifests`; every command a container executes comes from `commands` / `trivy`, the same
lists the repository's tests and scripts run for real with Docker.
"""

import asyncio
import sys
from typing import Annotated

import dagger
from dagger import DefaultPath, Doc, Ignore, check, dag, function, object_type

from . import (
    commands,
    containers,
    gate,
    provenance,
    registry_api,
    registry_login,
    release,
    scanning,
    signing,
    validation,
)
from . import docker_config as docker_config_logins
from . import manifests as deploy_manifests
from .build import SOURCE_IGNORE, BuildInputs, base_image
from .containers import SERVER_URL
from .deploy.kserve import DEFAULT_STORAGE_URI
from .deploy.pod import DEFAULT_NAMESPACE
from .images import ImageMetadata
from .models import ModelOptions
from .variants import ALL_DOCKERFILES, PUBLISHED, Variant

# Closed choices that --help lists: the variant table's names, the gate's severities.
dagger.enum_type(Variant)
dagger.enum_type(gate.Severity)

# Arguments several functions share, documented once.
Models = Annotated[
    dagger.Directory | None,
    Doc(
        "Model repository (<name>/<version>/model.onnx), or a folder holding one .onnx file,"
        " to bake in."
    ),
]
Registry = Annotated[str, Doc("Registry host[:port], e.g. ghcr.io, docker.io, localhost:5000.")]
Registries = Annotated[
    list[str] | None,
    Doc(
        "Registries to push the same release to, host[:port] each, e.g. ghcr.io,docker.io "
        "(default ghcr.io)."
    ),
]
Repository = Annotated[str, Doc("Repository path in the registry, e.g. my-org/onnx-serving.")]
ModelName = Annotated[
    str,
    Doc("Model name a single .onnx file (or --model-url) is served as; default: its file name."),
]
ModelVersion = Annotated[int | None, Doc("Version of that single model; default 1.")]
ModelUrl = Annotated[
    str,
    Doc("Fetch the model from this http(s) URL during the build, instead of --models."),
]
ModelSha256 = Annotated[
    str, Doc("sha256 of the --model-url file: the build fails on any other content.")
]
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
        model_name: ModelName = "",
        model_version: ModelVersion = None,
        model_url: ModelUrl = "",
        model_sha256: ModelSha256 = "",
    ) -> dagger.Container:
        """Build a serving image from its Dockerfile target, exactly as `docker build` would."""
        chosen = validation.variant(variant)
        target = validation.platform(chosen, platform)
        inputs = await self._inputs(
            models, ModelOptions(model_name, model_version, model_url, model_sha256)
        )
        return inputs.image(chosen, target)

    @function
    async def serve(
        self,
        variant: Annotated[Variant, Doc("Image variant to serve.")] = Variant.cpu,
        models: Models = None,
        model_name: ModelName = "",
        model_version: ModelVersion = None,
        model_url: ModelUrl = "",
        model_sha256: ModelSha256 = "",
    ) -> dagger.Service:
        """Run the image as a service: `dagger call serve up --ports 8000:8000`."""
        chosen = validation.variant(variant)
        inputs = await self._inputs(
            models, ModelOptions(model_name, model_version, model_url, model_sha256)
        )
        return containers.service(inputs.native_image(chosen))

    # ----- checks -----------------------------------------------------------------------

    @function
    @check
    async def test(
        self,
        models: Models = None,
        model_name: ModelName = "",
        model_version: ModelVersion = None,
        model_url: ModelUrl = "",
        model_sha256: ModelSha256 = "",
        pytest_args: Annotated[
            list[str] | None,
            Doc(
                "pytest arguments for a selection, e.g. tests/service,-m,not docker (default: all)."
            ),
        ] = None,
    ) -> str:
        """Run the test suite as CI does (REQUIRE_DOCKER=1 ./scripts/test.sh, with a Docker
        engine of its own), then smoke-test the cpu image this module builds."""
        inputs = await self._inputs(
            models, ModelOptions(model_name, model_version, model_url, model_sha256)
        )
        suite = await (await containers.suite_container(inputs, pytest_args or [])).stdout()
        image = inputs.native_image(Variant.cpu)
        checker = containers.check_container(inputs)
        smoke = await containers.smoke(checker, image, inputs.metadata.models)
        return f"test suite:\n{_tail(suite)}\nsmoke test (cpu image):\n{_tail(smoke)}"

    @function
    @check
    async def lint(self) -> str:
        """Lint the code (ruff, mypy), every Dockerfile (hadolint) and the CI workflows."""
        checker = containers.check_container(await self._inputs(identify_models=False))
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
        model_name: ModelName = "",
        model_version: ModelVersion = None,
        model_url: ModelUrl = "",
        model_sha256: ModelSha256 = "",
        severity: MinimumSeverity = gate.Severity.HIGH,
        ignore_unfixed: IgnoreUnfixed = False,
    ) -> str:
        """Scan images with Trivy (vulnerabilities, secrets, misconfigurations, licenses).

        Fails when a finding at the given severities is neither fixed nor listed, with a
        reason and an expiry date, in .trivyignore.yaml.
        """
        chosen = [validation.variant(variant)] if variant is not None else list(PUBLISHED)
        judge = await self._gate(severity, ignore_unfixed)
        inputs = await self._inputs(
            models, ModelOptions(model_name, model_version, model_url, model_sha256)
        )
        checker = containers.check_container(inputs)
        images = {f"{v} image": inputs.native_image(v) for v in chosen}
        return await scanning.scan_and_gate(checker, images, judge)

    @function
    async def sbom(
        self,
        variant: Annotated[Variant, Doc("Image variant to describe.")] = Variant.cpu,
        models: Models = None,
        model_name: ModelName = "",
        model_version: ModelVersion = None,
        model_url: ModelUrl = "",
        model_sha256: ModelSha256 = "",
    ) -> dagger.File:
        """The image's CycloneDX SBOM (JSON): `dagger call sbom export --path sbom.cdx.json`."""
        chosen = validation.variant(variant)
        inputs = await self._inputs(
            models, ModelOptions(model_name, model_version, model_url, model_sha256)
        )
        image = inputs.native_image(chosen)
        return scanning.image_sbom(containers.check_container(inputs), image)

    # ----- release ----------------------------------------------------------------------

    # The SDK's overloads of `function` omit `cache` (0.21.11), hence the ignore.
    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def publish(
        self,
        repository: Repository,
        tag: Annotated[
            str, Doc("Release tag, e.g. v1.2.3, v1.2 or v1.3.0-rc.1 (or use --edge).")
        ] = "",
        edge: Annotated[
            bool, Doc("Publish a main-branch build as edge and sha-<7 hex> (needs --revision).")
        ] = False,
        registry: Registries = None,
        username: Username = None,
        password: Password = None,
        docker_config: Annotated[
            dagger.Secret | None,
            Doc(
                "A Docker config file as a secret (file://$HOME/.docker/config.json): the "
                "login for each --registry from its auths (docker login, ECR, GAR, ACR tokens)."
            ),
        ] = None,
        variants: Annotated[
            list[Variant] | None, Doc("Variants to publish; default: every published variant.")
        ] = None,
        models: Models = None,
        model_name: ModelName = "",
        model_version: ModelVersion = None,
        model_url: ModelUrl = "",
        model_sha256: ModelSha256 = "",
        oidc_request_url: Annotated[
            dagger.Secret | None,
            Doc("Sign keylessly with cosign: env://ACTIONS_ID_TOKEN_REQUEST_URL (Actions)."),
        ] = None,
        oidc_request_token: Annotated[
            dagger.Secret | None,
            Doc("With --oidc-request-url: env://ACTIONS_ID_TOKEN_REQUEST_TOKEN."),
        ] = None,
        # The engine reads "/", ".", "/.git" and "./.git" alike as the repository of the
        # module's own checkout (core/modfunc.go `loadContextualGitArg`), and follows the .git
        # file of a worktree or submodule since dagger/dagger#13577 (modulesource_gitfile.go).
        git: Annotated[
            dagger.GitRepository | None,
            DefaultPath("/.git"),
            Doc(
                "The checkout's git repository: its release tags decide whether latest, 1 and "
                "1.2 move."
            ),
        ] = None,
        manifests: Annotated[
            bool, Doc("Also print the Kubernetes and KServe manifests for the pushed digests.")
        ] = False,
        run_url: Annotated[
            str,
            Doc(
                "This CI run's URL, the provenance's builder and invocation id, e.g. "
                "https://github.com/ORG/REPO/actions/runs/ID/attempts/N."
            ),
        ] = "",
    ) -> str:
        """Build, verify, then push: each variant and platform is built once, smoke-tested
        (emulated ones too: an inference of every model, the models label checked) and
        scanned at the gate, and only those very images are pushed: the immutable tags (kept
        where they already name this revision's build), each platform image's SBOM and SLSA
        provenance attached to it, (with OIDC secrets) signatures, then the floating tags
        (docs/REGISTRY_GUIDE.md). Returns one `ref@sha256:…` line per published tag.
        """
        # Everything is checked before the first build or push.
        hosts = validation.registries(registry)
        validation.credentials(username, password is not None)
        validation.login_source(username is not None, docker_config is not None, len(hosts))
        keyless = validation.signing(
            oidc_request_url is not None,
            oidc_request_token is not None,
            password is not None or docker_config is not None,
        )
        chosen = validation.published_variants(variants)
        options = ModelOptions(model_name, model_version, model_url, model_sha256)
        options = options.checked(models is not None)
        config = await docker_config.plaintext() if docker_config is not None else None
        targets = []
        for host in hosts:
            path = validation.repository(repository, host)
            plan = await release.plan(
                tag, edge, git, chosen, f"{host}/{path}", self.revision, self.version
            )
            user, secret = _login(host, username, password, config)
            if keyless and secret is None:
                raise ValueError(
                    f"signing pushes signatures to {host}: --docker-config has no login for it"
                )
            client = await self._login_round_trip(host, path, user, secret, "push,pull")
            if client is None:
                raise ValueError(
                    f"registry {host} is out of the module's reach: publish reads and moves "
                    "tags itself, so it needs a registry the module's process can reach"
                )
            targets.append((plan, client, user, secret))
        inputs = await self._inputs(models, options)

        native = await dag.default_platform()
        plans = [plan for plan, *_ in targets]
        images = release.build(inputs, plans[0])  # one build, pushed to every registry
        checker = containers.check_container(inputs)
        judge = await self._gate(gate.Severity.HIGH, False)
        await release.verify(checker, images, judge, native, inputs.metadata.models)
        run = provenance.BuildRun(inputs.metadata, plans[0].version, run_url)
        bases = {v: await base_image(inputs.checkout, inputs.metadata, v) for v in chosen}
        oidc = None
        if keyless and oidc_request_url is not None and oidc_request_token is not None:
            oidc = (oidc_request_url, oidc_request_token)
        published = await release.push(
            [
                release.Target(plan, client, user, pw, _signer(checker, client, user, pw, oidc))
                for plan, client, user, pw in targets
            ],
            images,
            self.revision,
            release.Evidence(checker, run, bases),
        )
        lines = [published[a] for plan in plans for v in plan.addresses for a in plan.addresses[v]]
        if manifests:
            for plan in plans:
                lines += release.manifest_documents(release.digests(plan, published))
        return "\n".join(lines)

    # A weekly verdict on what users pull today: never cached.
    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def scan_published(
        self,
        repository: Repository,
        registry: Registry = "ghcr.io",
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
        judge = await self._gate(severity, ignore_unfixed)
        await self._login_round_trip(host, path, username, password, "pull")
        images = release.pulled(f"{host}/{path}", wanted, host, username, password)
        checker = containers.check_container(await self._inputs(identify_models=False))
        return await scanning.scan_and_gate(checker, images, judge)

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
        ] = DEFAULT_STORAGE_URI,
        namespace: Annotated[str, Doc("The namespace of every resource.")] = DEFAULT_NAMESPACE,
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
        model_name: ModelName = "",
        model_version: ModelVersion = None,
        model_url: ModelUrl = "",
        model_sha256: ModelSha256 = "",
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
        inputs = await self._inputs(
            models, ModelOptions(model_name, model_version, model_url, model_sha256)
        )
        image = inputs.native_image(chosen)
        checker = containers.check_container(inputs)
        return await containers.load_test(checker, image, command)

    # ----- helpers (not exposed) --------------------------------------------------------

    async def _inputs(
        self,
        models: dagger.Directory | None = None,
        options: ModelOptions | None = None,
        identify_models: bool = True,
    ) -> BuildInputs:
        """What this call's builds share, prepared once: the context (with `models`), the
        labels (the models' identity unless only the check container is needed), and the CA
        bundle registered as the build secret."""
        metadata = ImageMetadata(
            version=self.version,
            revision=self.revision,
            created=self.created,
            source_url=self.source_url,
            base_image=self.base_image,
        )
        return await BuildInputs.prepare(
            self.source, models, metadata, self.ca_bundle, options, identify_models
        )

    async def _login_round_trip(
        self,
        host: str,
        repository: str,
        username: str | None,
        password: dagger.Secret | None,
        actions: str,
    ) -> registry_api.Registry | None:
        """The registry answers and grants `actions` (registry_login), before any build; a
        client of the repository, or None where the module's process cannot reach it."""
        plaintext = await password.plaintext() if password is not None else None
        cadata = await self.ca_bundle.plaintext() if self.ca_bundle is not None else None
        how = await asyncio.to_thread(
            registry_login.check_login, host, repository, username, plaintext, actions, cadata
        )
        if how == registry_login.UNREACHED:
            print(f"registry {host}: {how}", file=sys.stderr)
            return None
        return registry_api.Registry(host, repository, username, plaintext, cadata)

    async def _gate(
        self, severity: gate.Severity | str, ignore_unfixed: bool
    ) -> scanning.SeverityGate:
        """The gate's settings, checked before anything is built: threshold and ignore file."""
        return await scanning.severity_gate(
            self.source, severity, ignore_unfixed, self.offline_scan
        )


def _signer(
    checker: dagger.Container,
    registry: registry_api.Registry,
    username: str | None,
    password: dagger.Secret | None,
    oidc: tuple[dagger.Secret, dagger.Secret] | None,
) -> dagger.Container | None:
    """The container that signs in `registry` keylessly, when OIDC secrets are given."""
    if oidc is None or username is None or password is None:
        return None
    return signing.signer(checker, registry.host, username, password, *oidc)


def _login(
    host: str, username: str | None, password: dagger.Secret | None, docker_config: str | None
) -> tuple[str | None, dagger.Secret | None]:
    """The login for `host`: --username/--password, else the Docker config's entry for it
    (its password registered as a secret), else none."""
    if docker_config is None:
        return username, password
    found = docker_config_logins.login(docker_config, host)
    if found is None:
        return None, None
    return found.username, dag.set_secret(f"docker-config-{host}", found.password)


def _tail(text: str, lines: int = 15) -> str:
    """The last lines of a tool's output (pytest's summary is at the end)."""
    return "\n".join(text.strip().splitlines()[-lines:])

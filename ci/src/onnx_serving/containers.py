"""The containers the Dagger functions run tools in: the check container (linters, scanners,
clients), the test-suite container with a Docker engine of its own, an image served as a
service, and the smoke client against it."""

from __future__ import annotations

import datetime as dt

import dagger
from dagger import dag

from . import commands, emulation
from .build import CA_BUNDLE_PATH, BuildInputs
from .images import CONTAINER_PORT, IMAGE_UID, dockerfile_base_image
from .variants import Variant

SERVER_ALIAS = "server"  # the hostname a bound service gets inside the client container
SERVER_URL = f"{SERVER_ALIAS}:{CONTAINER_PORT}"
WORKDIR = "/app"  # the dev image's PYTHONPATH: the checkout is mounted over its baked copy
SUITE_DIR = "/src"  # where the test check copies the checkout
DOCKER_STATE = "/var/lib/docker"  # the test check's own engine keeps images and build cache


def check_container(inputs: BuildInputs) -> dagger.Container:
    """The check container: the dev image plus requirements/test.lock (hashed), as the
    image's user, the checkout at WORKDIR. Tests, linters, scanners and clients run here.

    The tools are installed before the checkout is mounted, so the install is cached until
    the lock changes; the CA bundle is mounted for that one step.
    """
    secret, checkout = inputs.ca_bundle, inputs.checkout
    installer = (
        inputs.dev_image()
        .with_user("root")
        .with_file(f"/tmp/{commands.TEST_LOCK}", checkout.file(commands.TEST_LOCK))
    )
    if secret is not None:
        installer = installer.with_mounted_secret(CA_BUNDLE_PATH, secret).with_env_variable(
            "PIP_CERT", CA_BUNDLE_PATH
        )
    installed = installer.with_exec(commands.pip_install_lock_command(f"/tmp/{commands.TEST_LOCK}"))
    if secret is not None:
        installed = installed.without_env_variable("PIP_CERT").without_mount(CA_BUNDLE_PATH)
    return (
        installed.with_user(str(IMAGE_UID))
        .with_mounted_directory(WORKDIR, checkout, owner=str(IMAGE_UID))
        .with_workdir(WORKDIR)
        .with_env_variable("PYTHONPATH", f"{WORKDIR}:{WORKDIR}/ci/src")
    )


async def suite_container(inputs: BuildInputs, pytest_args: list[str]) -> dagger.Container:
    """The README's test command in a Debian container with its own Docker engine: as
    root, with the capabilities dockerd needs, its state in a cache volume. The container
    is the cpu image's own base (Debian with Python 3.11)."""
    dockerfile, checkout = Variant.cpu.spec.dockerfile, inputs.checkout
    base = inputs.metadata.base_image or dockerfile_base_image(
        dockerfile, await checkout.file(dockerfile).contents()
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
        .with_directory(SUITE_DIR, checkout)
        .with_workdir(SUITE_DIR)
    )
    for name, value in commands.TEST_SUITE_ENV.items():
        suite = suite.with_env_variable(name, value)
    if inputs.ca_bundle is not None:  # pip and the image builds trust the proxy's CA
        suite = (
            suite.with_mounted_secret(CA_BUNDLE_PATH, inputs.ca_bundle)
            .with_env_variable("CA_BUNDLE", CA_BUNDLE_PATH)
            .with_env_variable("PIP_CERT", CA_BUNDLE_PATH)
        )
    command = [*commands.TEST_SUITE_COMMAND, *pytest_args]
    return suite.with_exec(command, insecure_root_capabilities=True)


def service(image: dagger.Container) -> dagger.Service:
    """An image running its own entrypoint, its port exposed."""
    return image.with_exposed_port(CONTAINER_PORT).as_service(use_entrypoint=True)


def emulatable(image: dagger.Container, platform: dagger.Platform) -> dagger.Container:
    """`image` as it can start under emulation (emulation.py says why)."""
    cpuinfo = emulation.emulated_cpuinfo(str(platform))
    if cpuinfo is None:
        return image
    fake = dag.directory().with_new_file("cpuinfo", cpuinfo).file("cpuinfo")
    return image.with_mounted_file(emulation.CPUINFO_PATH, fake)


async def smoke(checker: dagger.Container, image: dagger.Container, models_label: str) -> str:
    """The smoke client in the check container against `image` served as a service (and
    `models_label`, the image's models label, checked against what it serves)."""
    command = commands.smoke_command(SERVER_URL, models_label=models_label)
    return await (
        checker.with_service_binding(SERVER_ALIAS, service(image)).with_exec(command).stdout()
    )


async def load_test(checker: dagger.Container, image: dagger.Container, command: list[str]) -> str:
    """A load generator `command` in the check container against `image` served as a service."""
    return await (
        checker.with_service_binding(SERVER_ALIAS, service(image))
        # cache="never" covers the call, not its steps: a new value makes the load run anew.
        .with_env_variable("BENCHMARK_RUN", dt.datetime.now(dt.UTC).isoformat())
        .with_exec(command)
        .stdout()
    )

"""The engine behaviours a plan cannot show, as the SDK meets them through the local engine:
each test is a pipeline a module could write, and asserts what a real run gives."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import dagger
import pytest
from dagger import dag

from local_engine.server import Server
from local_engine.session import Session

pytestmark = pytest.mark.docker


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    """A local engine on its own event loop; the SDK finds it as a module process would."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    session = Session.create(caches_dir=tmp_path / "caches")
    server = Server(session)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    monkeypatch.setenv("DAGGER_SESSION_PORT", str(server.port))
    monkeypatch.setenv("DAGGER_SESSION_TOKEN", server.token_for(None))
    try:
        yield session
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        asyncio.run_coroutine_threadsafe(session.close(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def run(pipeline: object) -> object:
    async def connected() -> object:
        async with dagger.connection():
            return await pipeline()  # type: ignore[operator]

    return asyncio.run(connected())


def a_file() -> dagger.File:
    return dag.directory().with_new_file("payload", "data").file("payload")


def test_a_non_root_step_cannot_write_beside_a_file_mounted_into_a_new_folder(
    engine: Session, base_image: str
) -> None:
    async def pipeline() -> None:
        ctr = (
            dag.container()
            .from_(base_image)
            .with_user("10001")
            .with_mounted_file("/scan/image.tar", a_file())
        )
        owner = await ctr.with_exec(["stat", "-c", "%u %a", "/scan"]).stdout()
        assert owner.strip() == "0 755"
        with pytest.raises(dagger.ExecError) as failed:
            await ctr.with_exec(["sh", "-c", "echo {} > /scan/report.json"]).sync()
        assert failed.value.exit_code != 0
        assert "Permission denied" in failed.value.stderr

    run(pipeline)


def test_a_failing_exec_is_an_exec_error_with_its_outputs(engine: Session, base_image: str) -> None:
    script = ["sh", "-c", "echo out; echo err >&2; exit 3"]

    async def pipeline() -> None:
        ctr = dag.container().from_(base_image)
        with pytest.raises(dagger.ExecError) as failed:
            await ctr.with_exec(script).stdout()
        assert (failed.value.exit_code, failed.value.stdout, failed.value.stderr) == (
            3,
            "out",
            "err",
        )
        assert failed.value.command == script
        tolerated = ctr.with_exec(script, expect=dagger.ReturnType.ANY)
        assert await tolerated.exit_code() == 3

    run(pipeline)


def test_reading_a_file_nothing_wrote_fails(engine: Session, base_image: str) -> None:
    async def pipeline() -> None:
        ctr = dag.container().from_(base_image).with_exec(["true"])
        with pytest.raises(dagger.QueryError, match="no such file"):
            await ctr.file("/scan/report.json").contents()

    run(pipeline)


def test_a_step_sees_only_the_container_variables(engine: Session, base_image: str) -> None:
    async def pipeline() -> None:
        ctr = (
            dag.container()
            .from_(base_image)
            .with_env_variable("GREETING", "it's $HOME")
            .with_env_variable("PIP_CERT", "/run/secrets/ca")
            .with_exec(["true"])
            .without_env_variable("PIP_CERT")
        )
        env = await ctr.with_exec(["env"]).stdout()
        assert "GREETING=it's $HOME" in env.splitlines()
        assert "PIP_CERT" not in env
        assert "HOME=/root" in env.splitlines()  # runc's, from /etc/passwd

    run(pipeline)


def test_secrets_reach_the_process_and_never_the_image(
    engine: Session, base_image: str, tmp_path: Path
) -> None:
    value = "s3cr3t-" + os.urandom(8).hex()

    async def pipeline() -> None:
        secret = dag.set_secret("token", value)
        ctr = (
            dag.container()
            .from_(base_image)
            .with_secret_variable("TOKEN", secret)
            .with_mounted_secret("/run/secrets/token", secret)
            .with_exec(
                [
                    "sh",
                    "-c",
                    'test "$TOKEN" = "$(cat /run/secrets/token)"'
                    " && stat -c %u:%a /run/secrets/token",
                ]
            )
        )
        assert (await ctr.stdout()).strip() == "0:400"
        await ctr.as_tarball().export(str(tmp_path / "image.tar"))

    run(pipeline)
    assert value.encode() not in (tmp_path / "image.tar").read_bytes()


def test_a_cache_volume_outlives_the_step_and_takes_its_owner(
    engine: Session, base_image: str
) -> None:
    async def pipeline() -> None:
        cache = dag.cache_volume("semantics-test")
        base = dag.container().from_(base_image).with_user("10001")
        writer = base.with_mounted_cache("/cache", cache, owner="10001")
        await writer.with_exec(["sh", "-c", "echo kept > /cache/note"]).sync()
        reader = base.with_mounted_cache("/cache", cache, owner="10001")
        assert (await reader.with_exec(["cat", "/cache/note"]).stdout()).strip() == "kept"

    run(pipeline)


def test_a_bound_service_answers_under_its_alias(engine: Session, base_image: str) -> None:
    async def pipeline() -> None:
        site = dag.directory().with_new_file("index.html", "hello from the service")
        server = (
            dag.container()
            .from_(base_image)
            .with_mounted_directory("/site", site)
            .with_workdir("/site")
            .with_exposed_port(8080)
            .as_service(args=["python3", "-m", "http.server", "8080"])
        )
        client = dag.container().from_(base_image).with_service_binding("web", server)
        fetch = "import urllib.request; print(urllib.request.urlopen('http://web:8080/').read().decode())"
        assert (await client.with_exec(["python3", "-c", fetch]).stdout()).strip() == (
            "hello from the service"
        )

    run(pipeline)


def test_a_build_secret_stays_mounted_until_each_mount_is_removed(
    engine: Session, base_image: str
) -> None:
    dockerfile = f"FROM {base_image}\nRUN --mount=type=secret,id=token test -s /run/secrets/token\n"

    async def pipeline() -> None:
        context = dag.directory().with_new_file("Dockerfile", dockerfile)
        built = context.docker_build(secrets=[dag.set_secret("token", "value")])
        listing = ["sh", "-c", "ls /run/secrets 2>/dev/null || true"]
        assert (await built.with_exec(listing).stdout()).strip() == "token"
        once = built.without_mount("/run/secrets/token")
        assert (await once.with_exec(listing).stdout()).strip() == "token"
        twice = once.without_mount("/run/secrets/token")
        assert (await twice.with_exec(listing).stdout()).strip() == ""

    run(pipeline)

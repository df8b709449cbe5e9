"""Root filesystems as local Docker images: resolving `from`, copying files in and out, and
turning a container state into an image whose config is the container's (for tarballs,
publishing and services)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ignore
from .errors import EngineError
from .execution import owner_ids

if TYPE_CHECKING:
    from .evaluate import State
    from .session import Session

LOOPBACK_REGISTRIES = ("127.0.0.1", "localhost")
# Where finalised images of built or pulled images are kept between calls (_finalise).
FINALISED_REPOSITORY = "local-engine-finalised"


def registry_host(address: str) -> str:
    """`127.0.0.1:5000/a/b:tag` -> `127.0.0.1:5000`; Docker Hub names -> `docker.io`."""
    first = address.split("/", 1)[0]
    if "/" in address and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


async def resolve(
    session: Session, platform: str, address: str, auths: tuple[tuple[str, str, Any], ...]
) -> tuple[str, dict[str, Any]]:
    """The image for `from`: the local engine's copy (the engine's cache of a pull), or a
    pull from a loopback registry. No other registry is reachable here: that is refused."""
    docker = session.docker
    found = await docker.inspect_image(address)
    if found is None and registry_host(address).split(":")[0] in LOOPBACK_REGISTRIES:
        await _login(session, registry_host(address), auths)
        await docker.run(["pull", "--quiet", "--platform", platform, address])
        found = await docker.inspect_image(address)
    if found is None:
        raise EngineError(
            f"local engine: {address} is not in the local Docker engine and only registries "
            "on 127.0.0.1 are reachable here"
        )
    image_platform = f"{found.get('Os')}/{found.get('Architecture')}"
    if image_platform != platform:
        raise EngineError(f"local engine: {address} is {image_platform}, not {platform}")
    return str(found["Id"]), found.get("Config") or {}


async def _login(session: Session, host: str, auths: tuple[tuple[str, str, Any], ...]) -> None:
    for auth_host, username, secret in auths:
        if auth_host == host:
            password = session.secrets[secret.value_digest]
            await session.docker.run(
                ["login", "--username", username, "--password-stdin", host], stdin=password
            )


@dataclass(frozen=True)
class Member:
    """One entry to write into a rootfs: a file (data) or a folder (data None)."""

    path: str
    data: bytes | None
    mode: int
    owner: str
    link: str = ""  # a symlink's target


def tree_members(tree: Path, at: str, exclude: tuple[str, ...], owner: str) -> list[Member]:
    members = [Member(at, None, 0o755, owner)]
    for folder, dirs, files in os.walk(tree):
        relative = os.path.relpath(folder, tree)
        for name in sorted(dirs + files):
            rel = name if relative == "." else f"{relative}/{name}"
            if ignore.is_excluded(rel, exclude):
                continue
            full = Path(folder, name)
            mode = full.lstat().st_mode & 0o7777
            target = f"{at.rstrip('/')}/{rel}"
            if full.is_symlink():
                members.append(Member(target, b"", 0o777, owner, link=os.readlink(full)))
            elif full.is_dir():
                members.append(Member(target, None, mode, owner))
            else:
                members.append(Member(target, full.read_bytes(), mode, owner))
    return members


def _tar(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            info = tarfile.TarInfo(member.path.lstrip("/"))
            info.uid, info.gid = owner_ids(member.owner)
            info.mode = member.mode
            if member.link:
                info.type, info.linkname = tarfile.SYMTYPE, member.link
                archive.addfile(info)
            elif member.data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(member.data)
                archive.addfile(info, io.BytesIO(member.data))
    return buffer.getvalue()


async def _stopped(session: Session, image: str) -> str:
    name = f"local-engine-{uuid.uuid4().hex[:12]}"
    await session.docker.run(["create", "--name", name, "--user", "0", "--entrypoint", "/", image])
    return name


async def copy_in(session: Session, st: State, members: list[Member]) -> str:
    """A new rootfs image: `st`'s with the members written (owners and modes as given;
    missing parents created root-owned, 0755). The static helper extracts the archive as
    root, since `docker cp` does not keep the archive's owners."""
    from .execution import HELPER_DIR, Workspace

    if st.image is None:
        raise EngineError("local engine: writing files into an empty container is not modelled")
    under = [m.path for m in members if _mounted(st, m.path)]
    if under:  # the engine writes into the mount's source (core/container.go `locatePath`)
        raise EngineError(f"local engine: writing {under[0]} under a mount is not modelled")
    workspace = Workspace(session)
    (workspace.root / "helper/in.tar").write_bytes(_tar(members))
    name = f"local-engine-{uuid.uuid4().hex[:12]}"
    try:
        await session.docker.run(
            [
                "create",
                "--name",
                name,
                "--user",
                "0",
                "--platform",
                st.platform,
                *workspace.flags,
                "--entrypoint",
                f"{HELPER_DIR}/busybox",
                st.image,
                "tar",
                "-xpf",
                f"{HELPER_DIR}/in.tar",
                "-C",
                "/",
            ]
        )
        done = await session.docker.run(["start", "--attach", name], check=False)
        if done.returncode != 0:
            raise EngineError(f"local engine: writing files failed: {done.stderr.decode()[-500:]}")
        return await session.docker.commit(name)
    finally:
        workspace.release()
        await session.docker.remove_container(name)


def _mounted(st: State, path: str) -> tuple[Any, str] | None:
    """The mount a path is under (the last one wins), and the path inside it."""
    for mount in reversed(st.mounts):
        if path == mount.path or path.startswith(mount.path.rstrip("/") + "/"):
            return mount, path[len(mount.path) :].lstrip("/")
    return None


async def _copy_out(session: Session, st: State, path: str) -> tarfile.TarFile:
    if st.image is None:
        raise EngineError(f"local engine: {path}: no such file or directory (empty container)")
    name = await _stopped(session, st.image)
    try:
        done = await session.docker.run(["cp", f"{name}:{path}", "-"], check=False)
    finally:
        await session.docker.remove_container(name)
    if done.returncode != 0:
        raise EngineError(f"local engine: {path}: no such file or directory")
    return tarfile.open(fileobj=io.BytesIO(done.stdout))


async def container_file(session: Session, container: Any, path: str, target: Path) -> Path:
    from .evaluate import state

    st = await state(session, container)
    mounted = _mounted(st, path)
    if mounted is not None:
        return _from_mount(mounted[0], mounted[1], path)
    archive = await _copy_out(session, st, path)
    member = archive.getmembers()[0]
    if not member.isfile():
        raise EngineError(f"local engine: {path} is not a file")
    extracted = archive.extractfile(member)
    assert extracted is not None
    target.write_bytes(extracted.read())
    return target


def _from_mount(mount: Any, inner: str, path: str) -> Path:
    """A path under a mount reads the mount's source; a cache's content is never read back
    (core/container.go `locatePath`: "cannot retrieve path from cache")."""
    if mount.kind not in ("directory", "file"):
        raise EngineError(f"local engine: cannot retrieve path from {mount.kind}: {path}")
    found = Path(mount.source) / inner if inner else Path(mount.source)
    if not found.exists():
        raise EngineError(f"local engine: {path}: no such file or directory")
    return found


async def container_directory(session: Session, container: Any, path: str, target: Path) -> Path:
    from .evaluate import state

    st = await state(session, container)
    mounted = _mounted(st, path)
    if mounted is not None:
        source = _from_mount(mounted[0], mounted[1], path)
        if not source.is_dir():
            raise EngineError(f"local engine: {path} is not a directory")
        shutil.copytree(source, target, symlinks=True)
        return target
    archive = await _copy_out(session, st, path)
    staging = target.with_name(target.name + ".staging")
    archive.extractall(staging, filter="tar")
    Path(staging, os.path.basename(path.rstrip("/")) or ".").rename(target)
    return target


async def finalise(session: Session, st: State) -> str:
    """An image whose config is exactly the container's: what `asTarball`, `publish` and
    services see; made once per state, so every tag of a release names one digest."""
    key = json.dumps(
        [st.image, st.env, st.labels, st.ports, st.user, st.workdir, st.entrypoint, st.default_args]
    )
    task = session.finalised.get(key)
    if task is None:
        task = session.finalised[key] = asyncio.ensure_future(_finalise(session, st))
    return await asyncio.shield(task)


async def _finalise(session: Session, st: State) -> str:
    """Variables the rootfs image's Docker config has but the container does not (none here,
    as no step writes variables into a Docker config) cannot be removed by `docker commit`:
    refused."""
    assert st.image is not None
    found = await session.docker.inspect_image(st.image)
    assert found is not None
    config = found.get("Config") or {}
    ours = dict(st.env)
    stale = [e.split("=", 1)[0] for e in config.get("Env") or () if e.split("=", 1)[0] not in ours]
    stale_labels = [k for k in config.get("Labels") or {} if k not in dict(st.labels)]
    if stale or stale_labels:
        raise EngineError(
            f"local engine: unsetting {stale + stale_labels} in an image is not modelled"
        )
    changes = [f"ENV {k}={json.dumps(v)}" for k, v in st.env]
    changes += [f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in st.labels]
    changes += [f"EXPOSE {port}/{protocol.lower()}" for port, protocol in st.ports]
    changes += [f"USER {st.user or '0'}", f"WORKDIR {st.workdir or '/'}"]
    changes += [
        f"ENTRYPOINT {json.dumps(list(st.entrypoint))}",
        f"CMD {json.dumps(list(st.default_args))}",
    ]
    # The engine keeps its cache between calls: the same config over the same image (a build
    # or a pull, which Docker keeps) is the same image in a later call too, so a rerun pushes
    # the digest the first run pushed. `docker commit` stamps the time, so each such image is
    # kept under a tag named by what it is made of. Images this session made (exec results)
    # are removed when it ends: nothing later could ask for them again.
    kept = None
    if st.image not in session.docker.committed:
        made_of = hashlib.sha256(json.dumps([st.image, changes]).encode()).hexdigest()
        kept = f"{FINALISED_REPOSITORY}:{made_of[:32]}"
        found = await session.docker.inspect_image(kept)
        if found is not None:
            return str(found["Id"])
    name = await _stopped(session, st.image)
    try:
        image = await session.docker.commit(name, *changes)
    finally:
        await session.docker.remove_container(name)
    if kept is not None:
        await session.docker.run(["tag", image, kept])
        session.docker.committed.remove(image)  # kept for later calls, as the engine's cache
    return image


async def container_tarball(session: Session, container: Any, target: Path) -> Path:
    """`asTarball`: the finalised image as `docker save` writes it (Docker's archive layout;
    the engine writes an OCI layout, which the same readers, Trivy included, accept), owned
    by root with mode 0600 as the engine writes it (core/container_image.go `AsTarball`)."""
    from .evaluate import state

    image = await finalise(session, await state(session, container))
    await session.docker.run(["save", "--output", str(target), image])
    os.chown(target, 0, 0)
    target.chmod(0o600)
    return target

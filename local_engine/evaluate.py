"""A Container's state, computed operation by operation on the Docker engine.

The state is the engine's container: a root filesystem (a local Docker image holding only
layers: its Docker config is never trusted), the config the API set (variables, user,
workdir, entrypoint, labels, ports), and what is attached but not in the rootfs (mounts,
secret variables, service bindings, registry logins), as core/container.go keeps them.
Each prefix of a container's chain is evaluated once per session (Session.once).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import registry, rootfs
from .errors import EngineError, exec_error
from .execution import ExecResult, Mount, run_exec
from .values import value_of

if TYPE_CHECKING:
    from .container import Container
    from .session import Session


@dataclass(frozen=True)
class State:
    platform: str
    image: str | None = None  # None: an empty rootfs (`dag.container()`)
    env: tuple[tuple[str, str], ...] = ()
    user: str = ""
    workdir: str = ""
    entrypoint: tuple[str, ...] = ()
    default_args: tuple[str, ...] = ()
    default_args_set: bool = False  # withDefaultArgs was called (core/container.go DefaultArgs)
    labels: tuple[tuple[str, str], ...] = ()
    # OCI annotations of the image's manifest (and its descriptor in an index), not its config.
    annotations: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[int, str], ...] = ()
    healthcheck: str = ""  # the image's Docker HEALTHCHECK (JSON) or ""
    mounts: tuple[Mount, ...] = ()
    secret_env: tuple[tuple[str, Any], ...] = ()
    services: tuple[tuple[str, Any], ...] = ()
    auths: tuple[tuple[str, str, Any], ...] = ()
    last: ExecResult | None = None


async def state(session: Session, container: Container) -> State:
    evaluated: State = await session.once(container, lambda: _evaluate(session, container))
    return evaluated


async def last_exec(session: Session, container: Container) -> ExecResult:
    result = (await state(session, container)).last
    if result is None:
        raise EngineError("local engine: no command has been executed in this container")
    return result


async def _evaluate(session: Session, container: Container) -> State:
    if not container.ops:
        return State(platform=container.platform_name)
    before = await state(session, container.parent())
    name, args = container.ops[-1]
    applied: State = await _APPLY[name](session, before, *args)
    return applied


def _set(pairs: tuple[tuple[str, str], ...], name: str, value: str) -> tuple[tuple[str, str], ...]:
    return (*((k, v) for k, v in pairs if k != name), (name, value))


def expand(text: str, st: State) -> str:
    """`$VAR` and `${VAR}` from the container's variables (unset ones become empty); a secret
    variable is an error (core/schema/container.go `expandEnvVar`)."""
    values, secrets = dict(st.env), {name for name, _ in st.secret_env}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in secrets:
            raise EngineError(f"local engine: expand cannot be used with secret variable {name}")
        return values.get(name, "")

    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", value, text)


async def _from(session: Session, before: State, address: str) -> State:
    auths = before.auths
    image, config = await rootfs.resolve(session, before.platform, address, auths)
    entrypoint = tuple(config.get("Entrypoint") or ())
    return State(
        platform=before.platform,
        image=image,
        env=tuple((k, v) for k, _, v in (e.partition("=") for e in config.get("Env") or ())),
        user=config.get("User") or "",
        workdir=config.get("WorkingDir") or "",
        entrypoint=entrypoint,
        default_args=tuple(config.get("Cmd") or ()),
        labels=tuple(sorted((config.get("Labels") or {}).items())),
        ports=tuple(_ports(config)),
        healthcheck=json.dumps(config["Healthcheck"]) if config.get("Healthcheck") else "",
        auths=auths,
    )


def _ports(config: dict[str, Any]) -> list[tuple[int, str]]:
    found = []
    for key in config.get("ExposedPorts") or {}:
        port, _, protocol = key.partition("/")
        found.append((int(port), (protocol or "tcp").upper()))
    return found


async def _user(session: Session, before: State, name: str) -> State:
    return replace(before, user=name)


async def _workdir(session: Session, before: State, path: str, expand_it: bool) -> State:
    return replace(before, workdir=expand(path, before) if expand_it else path)


async def _env(session: Session, before: State, name: str, value: str, expand_it: bool) -> State:
    value = expand(value, before) if expand_it else value
    return replace(before, env=_set(before.env, name, value))


async def _unset_env(session: Session, before: State, name: str) -> State:
    return replace(before, env=tuple((k, v) for k, v in before.env if k != name))


async def _secret_env(session: Session, before: State, name: str, secret: Any) -> State:
    kept = tuple((k, s) for k, s in before.secret_env if k != name)
    return replace(before, secret_env=(*kept, (name, secret)))


async def _label(session: Session, before: State, name: str, value: str) -> State:
    return replace(before, labels=_set(before.labels, name, value))


async def _annotation(session: Session, before: State, name: str, value: str) -> State:
    return replace(before, annotations=_set(before.annotations, name, value))


async def _unset_annotation(session: Session, before: State, name: str) -> State:
    return replace(before, annotations=tuple((k, v) for k, v in before.annotations if k != name))


async def _entrypoint(session: Session, before: State, args: tuple[str, ...], keep: bool) -> State:
    # core/container.go WithEntrypoint: the default args are dropped unless kept.
    if keep:
        return replace(before, entrypoint=args)
    return replace(before, entrypoint=args, default_args=(), default_args_set=False)


async def _default_args(session: Session, before: State, args: tuple[str, ...]) -> State:
    return replace(before, default_args=args, default_args_set=True)


async def _expose(session: Session, before: State, port: int, protocol: str) -> State:
    kept = tuple(p for p in before.ports if p != (port, protocol))
    return replace(before, ports=(*kept, (port, protocol)))


async def _registry_auth(
    session: Session, before: State, host: str, user: str, secret: Any
) -> State:
    kept = tuple(a for a in before.auths if a[0] != host)
    return replace(before, auths=(*kept, (host, user, secret)))


async def _file(
    session: Session, before: State, path: str, source: Any, permissions: int | None, owner: str
) -> State:
    from .filesystem import file_path

    data = await file_path(session, source)
    mode = permissions if permissions is not None else data.stat().st_mode & 0o7777
    member = rootfs.Member(path, data.read_bytes(), mode, owner)
    return replace(before, image=await rootfs.copy_in(session, before, [member]))


async def _new_file(
    session: Session, before: State, path: str, contents: str, permissions: int, owner: str
) -> State:
    member = rootfs.Member(path, contents.encode(), permissions, owner)
    return replace(before, image=await rootfs.copy_in(session, before, [member]))


async def _directory(
    session: Session, before: State, path: str, source: Any, exclude: tuple[str, ...], owner: str
) -> State:
    from .filesystem import materialise

    tree = await materialise(session, source)
    members = rootfs.tree_members(tree, path, exclude, owner)
    return replace(before, image=await rootfs.copy_in(session, before, members))


async def _mount_directory(
    session: Session, before: State, path: str, source: Any, owner: str
) -> State:
    from .filesystem import materialise

    tree = await materialise(session, source)
    return _with_mount(before, Mount(path, "directory", str(tree), owner=owner))


async def _mount_file(session: Session, before: State, path: str, source: Any, owner: str) -> State:
    from .filesystem import file_path

    data = await file_path(session, source)
    return _with_mount(before, Mount(path, "file", str(data), owner=owner))


async def _mount_secret(
    session: Session, before: State, path: str, secret: Any, owner: str, mode: int
) -> State:
    value_of(session, secret)  # an unknown secret fails here, not at exec time
    return _with_mount(before, Mount(path, "secret", secret.value_digest, owner=owner, mode=mode))


async def _mount_cache(
    session: Session, before: State, path: str, cache: Any, sharing: str, owner: str
) -> State:
    return _with_mount(before, Mount(path, "cache", cache.key, owner=owner, sharing=sharing))


def _with_mount(before: State, mount: Mount) -> State:
    return replace(before, mounts=(*before.mounts, mount))


async def _unmount(session: Session, before: State, path: str) -> State:
    """The last mount at `path` goes, and the last secret mounted there too: the engine keeps
    the two in separate lists and deletes one of each (core/container.go `WithoutMount`), so
    a second secret mount at the same path (a Dockerfile's own) stays."""
    mounts = list(before.mounts)
    for secret in (False, True):
        for index in range(len(mounts) - 1, -1, -1):
            if mounts[index].path == path and (mounts[index].kind == "secret") == secret:
                del mounts[index]
                break
    return replace(before, mounts=tuple(mounts))


async def _service(session: Session, before: State, alias: str, service: Any) -> State:
    kept = tuple(s for s in before.services if s[0] != alias)
    return replace(before, services=(*kept, (alias, service)))


async def _exec(
    session: Session,
    before: State,
    args: tuple[str, ...],
    use_entrypoint: bool,
    expect: str,
    privileged: bool,
    no_init: bool,
) -> State:
    argv = (*before.entrypoint, *args) if use_entrypoint else args
    image, mounts, result = await run_exec(session, before, argv, privileged, no_init)
    if expect == "SUCCESS" and result.exit_code != 0:
        # What the engine's progress output shows of a failed step: its last lines.
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        print(f"local engine: exit code {result.exit_code}: {argv[0]}\n{tail}", file=sys.stderr)
        raise exec_error(argv, result.exit_code, result.stdout, result.stderr)
    if expect == "FAILURE" and result.exit_code == 0:
        raise EngineError(f"local engine: {list(argv)!r} exited 0, a failure was expected")
    return replace(before, image=image, mounts=mounts, last=result)


async def publish(
    session: Session, container: Container, address: str, variants: list[Container] | None
) -> str:
    """`Container.publish`: the receiver and its platform variants, empty ones dropped
    (core/container.go filterEmptyContainers), pushed as registry.push decides."""
    receiver = await state(session, container)
    candidates = [container, *(variants or [])]
    states = [await state(session, c) for c in candidates]
    images = [
        (s.platform, await rootfs.finalise(session, s)) for s in states if s.image is not None
    ]
    if not images:
        raise EngineError(
            f"local engine: nothing to publish to {address}: every container is empty"
        )
    # Each image's annotations go on its own manifest (engine/engineutil/containerimage.go);
    # registry.push writes one set on all of them, so variants must agree here.
    annotations = {s.annotations for s in states if s.image is not None}
    if len(annotations) != 1:
        raise EngineError(
            f"local engine: publishing {address}: platform variants with different "
            "annotations are not modelled"
        )
    [annotated] = annotations
    credentials = _credentials(session, receiver, address)
    # The same images under another tag of the same repository are the same manifests: the
    # first push uploads them, later tags only point at its digest.
    reference = registry.parse_reference(address)
    key = f"{reference.normalized} {sorted(images)} {sorted(annotated)}"
    # One at a time per repository: the first push uploads the images, later tags only point
    # at its digest. (Debian's registry can answer 500 to a read racing a write of the same
    # manifest's link file.)
    async with session.lock(f"push:{reference.normalized}"):
        if key in session.pushed:
            return await asyncio.to_thread(
                registry.retag, address, session.pushed[key], credentials=credentials
            )
        # One platform is a single manifest, even when given as a variant; two or more an
        # index (engine/engineutil/imageexport/writer.go `Assemble`).
        published = await asyncio.to_thread(
            registry.push,
            address,
            images,
            index=len(images) > 1,
            credentials=credentials,
            annotations=dict(annotated),
            docker=session.docker.binary,
        )
        session.pushed[key] = published.rsplit("@", 1)[1]
        return published


def _credentials(session: Session, st: State, address: str) -> registry.Credentials | None:
    host = rootfs.registry_host(address)
    for auth_host, username, secret in st.auths:
        if auth_host == host:
            return registry.Credentials(username, value_of(session, secret).decode())
    return None


_APPLY: dict[str, Any] = {
    "from": _from,
    "user": _user,
    "workdir": _workdir,
    "env": _env,
    "unsetEnv": _unset_env,
    "secretEnv": _secret_env,
    "label": _label,
    "annotation": _annotation,
    "unsetAnnotation": _unset_annotation,
    "entrypoint": _entrypoint,
    "defaultArgs": _default_args,
    "expose": _expose,
    "registryAuth": _registry_auth,
    "file": _file,
    "newFile": _new_file,
    "directory": _directory,
    "mountDirectory": _mount_directory,
    "mountFile": _mount_file,
    "mountSecret": _mount_secret,
    "mountCache": _mount_cache,
    "unmount": _unmount,
    "service": _service,
    "exec": _exec,
    "build": None,  # set by build.py (Directory.dockerBuild)
}

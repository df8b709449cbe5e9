"""`withExec` on Docker with the engine's semantics.

- Mount points: Docker creates a missing mount point, and its missing parents, owned by root
  with mode 0755, as the engine does (engine/engineutil/executor_spec.go, v0.21.8): a non-root
  step cannot write next to a file mounted into a new folder.
- Variables: exactly the container's, set by a static helper mounted at /.local-engine (the
  engine mounts its own init at /.init the same way, executor_spec.go `injectInit`), so no
  value ever enters a Docker config: secrets reach the process only, never an image. HOME,
  when the container sets none, is the user's from /etc/passwd (else /), as runc sets it.
- Mounted directories and files are private copies per exec whose changes carry on to later
  execs of the same chain; secrets are read-only files (default root-owned, mode 0400);
  cache volumes are host folders, one per key, sharing mode and owner.
- Service bindings: the step joins the service's network namespace and the alias names
  127.0.0.1 there, so containers never address each other by IP (unlike the engine, the
  service is then also on the step's own localhost).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shlex
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EngineError

if TYPE_CHECKING:
    from .evaluate import State
    from .session import Session

HELPER_DIR = "/.local-engine"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: runs in any image
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WRAPPER = (
    "set -a; . /.local-engine/env; set +a; "
    '[ -n "${HOME+set}" ] || export HOME="$(/.local-engine/busybox awk -F: -v u="$(/.local-engine/'
    "busybox id -u)\" '$3 == u { print $6; exit }' /etc/passwd 2>/dev/null)\"; "
    '[ -n "$HOME" ] || export HOME=/; exec "$@"'
)


@dataclass(frozen=True)
class Mount:
    path: str
    kind: str  # directory | file | secret | cache
    source: str  # host path (directory, file), secret digest, or cache key
    owner: str = ""
    mode: int = 0o400
    sharing: str = "SHARED"


@dataclass(frozen=True)
class ExecResult:
    command: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str


def owner_ids(owner: str, default: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """`10001` or `10001:10001`; names need the image's /etc/passwd and are not modelled."""
    if not owner:
        return default
    user, _, group = owner.partition(":")
    if not user.isdigit() or (group and not group.isdigit()):
        raise EngineError(f"local engine: owner {owner!r}: only numeric ids are modelled")
    return int(user), int(group or user)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, gid)


def env_file(variables: dict[str, str]) -> str:
    variables.setdefault("PATH", DEFAULT_PATH)  # the engine's default when the image has none
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in variables.items())


class Workspace:
    """The host side of one exec: helper, variables, private mount copies."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.root = session.state_dir / "execs" / uuid.uuid4().hex
        if not BUSYBOX.is_file():
            raise EngineError(
                f"local engine: {BUSYBOX} is missing: apt-get install busybox-static "
                "(scripts/setup.sh test installs it)"
            )
        (self.root / "helper").mkdir(parents=True)
        self.root.chmod(0o700)
        shutil.copy2(BUSYBOX, self.root / "helper/busybox")
        self.flags: list[str] = [
            "--volume",
            f"{self.root / 'helper'}:{HELPER_DIR}:ro",
        ]
        self.locks: list[asyncio.Lock] = []
        self.held: set[str] = set()  # cache locks this exec holds (one per volume)

    async def mount(self, index: int, mount: Mount) -> Mount:
        """Docker flags for one mount; returns the mount as later execs see it."""
        if mount.kind in ("directory", "file"):
            copy = self.root / "mounts" / str(index)
            copy.parent.mkdir(exist_ok=True)
            source = Path(mount.source)
            if mount.kind == "directory":
                shutil.copytree(source, copy, symlinks=True)
            else:
                shutil.copy2(source, copy)
            if mount.owner:
                _chown_tree(copy, *owner_ids(mount.owner))
            self.flags += ["--volume", f"{copy}:{mount.path}"]
            return Mount(mount.path, mount.kind, str(copy), mount.owner)
        if mount.kind == "secret":
            path = self.root / "secrets" / str(index)
            path.parent.mkdir(exist_ok=True, mode=0o700)
            path.write_bytes(self.session.secrets[mount.source])
            path.chmod(mount.mode)
            os.chown(path, *owner_ids(mount.owner))
            self.flags += ["--volume", f"{path}:{mount.path}:ro"]
            return mount
        if mount.kind == "cache":
            self.flags += ["--volume", f"{await self._cache(mount)}:{mount.path}"]
            return mount
        raise EngineError(f"local engine: mount kind {mount.kind} is not modelled")

    async def mount_all(self, mounts: tuple[Mount, ...]) -> tuple[Mount, ...]:
        """Every mount, where the last one at a path shadows earlier ones (Docker refuses two
        at one path; the engine stacks them); returns the mounts as later execs see them."""
        last = {m.path: i for i, m in enumerate(mounts)}
        return tuple(
            [await self.mount(i, m) if last[m.path] == i else m for i, m in enumerate(mounts)]
        )

    async def _cache(self, mount: Mount) -> Path:
        """A cache volume is its key with its sharing mode and owner (withMountedCache makes a
        new volume of them, core/schema/container.go); LOCKED and PRIVATE ones are used by one
        exec at a time (PRIVATE is serialised like LOCKED, core/container_exec.go)."""
        identity = f"{mount.source}\0{mount.sharing}\0{mount.owner}"
        name = hashlib.sha256(identity.encode()).hexdigest()[:32]
        if mount.sharing in ("LOCKED", "PRIVATE") and name not in self.held:
            lock = self.session.lock(f"cache:{name}")
            await lock.acquire()
            self.locks.append(lock)
            self.held.add(name)
        folder = self.session.caches_dir / name
        if not folder.exists():
            folder.mkdir(parents=True)
            os.chown(folder, *owner_ids(mount.owner))  # a new cache takes the owner given
        return folder

    def write_env(self, variables: dict[str, str]) -> None:
        path = self.root / "helper/env"
        path.write_text(env_file(variables))
        path.chmod(0o444)  # a non-root step must read its own variables

    def release(self) -> None:
        """Idempotent: a service's workspace is released when it stops and at session end."""
        for lock in self.locks:
            lock.release()
        self.locks.clear()
        shutil.rmtree(self.root / "secrets", ignore_errors=True)
        (self.root / "helper/env").unlink(missing_ok=True)


def process_flags(st: State, privileged: bool, no_init: bool) -> list[str]:
    flags = ["--user", st.user or "0", "--workdir", st.workdir or "/", "--platform", st.platform]
    if privileged:  # insecureRootCapabilities: every capability, no seccomp profile
        flags.append("--privileged")
    if not no_init:
        flags.append("--init")
    return flags


def wrapped(argv: tuple[str, ...]) -> list[str]:
    """The command behind the helper: variables from the env file only, then exec."""
    busybox = f"{HELPER_DIR}/busybox"
    return ["--entrypoint", busybox, "env", "-i", busybox, "sh", "-c", WRAPPER, "sh", *argv]


async def _started_or_refuse(session: Session, name: str, privileged: bool) -> None:
    """A step the machine could not start is the engine's failure, not the command's exit."""
    error = (await session.docker.run(["inspect", "--format", "{{.State.Error}}", name])).text
    if error:
        hint = " (insecureRootCapabilities: this machine refuses privileged containers)"
        raise EngineError(
            f"local engine: the step could not start: {error}" + (hint if privileged else "")
        )


async def run_exec(
    session: Session, st: State, argv: tuple[str, ...], privileged: bool, no_init: bool
) -> tuple[str, tuple[Mount, ...], ExecResult]:
    """Run `argv` in the container; returns the new rootfs image, mounts and result."""
    from .services import bound_network

    if st.image is None:
        raise EngineError("local engine: withExec on an empty container (no rootfs)")
    if not argv:
        raise EngineError("local engine: withExec needs a command")
    workspace = Workspace(session)
    name = f"local-engine-{uuid.uuid4().hex[:12]}"
    try:
        mounts = await workspace.mount_all(st.mounts)
        variables = dict(st.env)
        variables.update({k: session.secrets[s.value_digest].decode() for k, s in st.secret_env})
        workspace.write_env(variables)
        async with bound_network(session, st.services) as network:
            await session.docker.run(
                [
                    "create",
                    "--name",
                    name,
                    *network,
                    *process_flags(st, privileged, no_init),
                    *workspace.flags,
                    *wrapped(argv)[:2],
                    st.image,
                    *wrapped(argv)[2:],
                ]
            )
            started = await session.docker.run(["start", "--attach", name], check=False)
            code = await session.docker.run(["inspect", "--format", "{{.State.ExitCode}}", name])
            await _started_or_refuse(session, name, privileged)
            image = await session.docker.commit(name)
    finally:
        workspace.release()
        await session.docker.remove_container(name)
    result = ExecResult(
        argv,
        int(code.text),
        started.stdout.decode(errors="replace"),
        started.stderr.decode(errors="replace"),
    )
    return image, mounts, result

"""`Directory.dockerBuild`: BuildKit (`docker build`) on the materialised directory.

As in the engine (core/schema/directory.go and util/llbtodagger/exec.go, v0.21.8):
- each secret is passed under its name, the id `RUN --mount=type=secret,id=NAME` asks for; a
  secret without a name (read by the CLI from env:// or file://) is refused;
- the built container keeps every build secret mounted at /run/secrets/NAME, and a
  `RUN --mount=type=secret` of the final stage stays mounted too (a second mount at its
  target), so `withoutMount` of one path leaves the other.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EngineError
from .evaluate import _APPLY, State, _from
from .execution import Mount

if TYPE_CHECKING:
    from .container import Container
    from .filesystem import Directory
    from .session import Session

_SECRET_MOUNT = re.compile(r"--mount=type=secret,([^\s]+)")


def docker_build(session: Session, context: Directory, **kw: Any) -> Container:
    from .container import Container
    from .docker import host_platform
    from .values import refuse_unmodelled

    dockerfile = kw.pop("dockerfile", "Dockerfile") or "Dockerfile"
    platform = kw.pop("platform", None) or host_platform()
    target = kw.pop("target", "") or ""
    build_args = tuple((a["name"], a["value"]) for a in kw.pop("build_args", None) or ())
    secrets = tuple(kw.pop("secrets", None) or ())
    refuse_unmodelled("Directory.dockerBuild", kw, set())
    for secret in secrets:
        if not secret.secret_name:
            raise EngineError("local engine: a dockerBuild secret needs a name (dag.set_secret)")
    return Container(platform, (("build", (context, dockerfile, target, build_args, secrets)),))


def final_stage_secret_mounts(dockerfile: str, target: str) -> list[tuple[str, str]]:
    """(secret id, mount target) of each `RUN --mount=type=secret` in the built stage."""
    stages = re.split(r"(?im)^FROM\s+", dockerfile)[1:]
    chosen = stages[-1] if stages else ""
    for stage in stages:
        name = re.match(r"\S+(?:\s+AS\s+(\S+))?", stage, re.IGNORECASE)
        if target and name and (name.group(1) or "").lower() == target.lower():
            chosen = stage
    mounts = []
    for options in _SECRET_MOUNT.findall(chosen):
        fields = dict(f.split("=", 1) for f in options.split(",") if "=" in f)
        secret_id = fields.get("id", "")
        mounts.append((secret_id, fields.get("target", f"/run/secrets/{secret_id}")))
    return mounts


async def _build(
    session: Session,
    before: State,
    context: Directory,
    dockerfile: str,
    target: str,
    build_args: tuple[tuple[str, str], ...],
    secrets: tuple[Any, ...],
) -> State:
    from .filesystem import materialise

    root = await materialise(session, context)
    dockerfile_path = root / dockerfile
    if not dockerfile_path.is_file():
        raise EngineError(f"local engine: dockerBuild: {dockerfile} not found in the directory")
    with tempfile.TemporaryDirectory(dir=session.state_dir) as private:
        flags = ["--platform", before.platform, "--file", str(dockerfile_path), "--quiet"]
        flags += ["--target", target] if target else []
        flags += [f"--build-arg={k}={v}" for k, v in build_args]
        for secret in secrets:
            path = Path(private, secret.secret_name)
            path.write_bytes(session.secrets[secret.value_digest])
            flags += ["--secret", f"id={secret.secret_name},src={path}"]
        iid = Path(private, "iid")
        await session.docker.run(["build", *flags, "--iidfile", str(iid), str(root)])
        image = iid.read_text().strip()
    built = await _from(session, State(platform=before.platform), image)
    by_name = {s.secret_name: s for s in secrets}
    mounts = [Mount(f"/run/secrets/{s.secret_name}", "secret", s.value_digest) for s in secrets]
    for secret_id, mount_path in final_stage_secret_mounts(dockerfile_path.read_text(), target):
        if secret_id in by_name:
            mounts.append(Mount(mount_path, "secret", by_name[secret_id].value_digest))
    return State(**{**built.__dict__, "mounts": tuple(mounts)})


_APPLY["build"] = _build

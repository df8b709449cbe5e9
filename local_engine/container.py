"""Container: the API object. Every `with*` call returns a new Container one operation longer;
nothing runs until a leaf (`stdout`, `sync`, `file(...).contents`, `publish`) needs the state,
which evaluate.py computes once per definition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from . import evaluate
from .errors import EngineError
from .filesystem import Directory, File, clean
from .rootfs import registry_host
from .values import CacheVolume, Secret, refuse_unmodelled

if TYPE_CHECKING:
    from .services import Service
    from .session import Session


@dataclass(frozen=True, eq=False)
class Container:
    type_name: ClassVar[str] = "Container"
    platform_name: str
    ops: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def definition(self) -> Any:
        return [self.platform_name, [[name, list(args)] for name, args in self.ops]]

    def then(self, name: str, *args: Any) -> Container:
        return Container(self.platform_name, (*self.ops, (name, args)))

    def parent(self) -> Container:
        return Container(self.platform_name, self.ops[:-1])

    def id(self, session: Session) -> str:
        return session.store.register(self)

    # ----- configuration ----------------------------------------------------------------

    def from_(self, session: Session, address: str) -> Container:
        return self.then("from", address)

    def with_user(self, session: Session, name: str) -> Container:
        return self.then("user", name)

    def with_workdir(self, session: Session, path: str, expand: bool = False) -> Container:
        return self.then("workdir", path, expand)

    def with_env_variable(
        self, session: Session, name: str, value: str, expand: bool = False
    ) -> Container:
        return self.then("env", name, value, expand)

    def without_env_variable(self, session: Session, name: str) -> Container:
        return self.then("unsetEnv", name)

    def with_secret_variable(self, session: Session, name: str, secret: Secret) -> Container:
        return self.then("secretEnv", name, secret)

    def with_label(self, session: Session, name: str, value: str) -> Container:
        return self.then("label", name, value)

    def with_annotation(self, session: Session, name: str, value: str) -> Container:
        return self.then("annotation", name, value)

    def without_annotation(self, session: Session, name: str) -> Container:
        return self.then("unsetAnnotation", name)

    def with_entrypoint(self, session: Session, args: list[str], **kw: Any) -> Container:
        refuse_unmodelled("Container.withEntrypoint", kw, {"keep_default_args"})
        return self.then("entrypoint", tuple(args), bool(kw.get("keep_default_args")))

    def with_default_args(self, session: Session, args: list[str]) -> Container:
        return self.then("defaultArgs", tuple(args))

    def with_exposed_port(self, session: Session, port: int, **kw: Any) -> Container:
        protocol = kw.pop("protocol", "TCP")
        kw.pop("description", None)
        refuse_unmodelled("Container.withExposedPort", kw, set())
        return self.then("expose", port, protocol)

    def with_registry_auth(
        self, session: Session, address: str, username: str, secret: Secret
    ) -> Container:
        return self.then("registryAuth", registry_host(address), username, secret)

    # ----- files and mounts -------------------------------------------------------------

    def with_file(self, session: Session, path: str, source: File, **kw: Any) -> Container:
        permissions, owner = kw.pop("permissions", None), kw.pop("owner", "")
        refuse_unmodelled("Container.withFile", kw, set())
        return self.then("file", _absolute(path), source, permissions, owner)

    def with_new_file(self, session: Session, path: str, contents: str, **kw: Any) -> Container:
        permissions, owner = kw.pop("permissions", 0o644), kw.pop("owner", "")
        refuse_unmodelled("Container.withNewFile", kw, set())
        return self.then("newFile", _absolute(path), contents, permissions, owner)

    def with_directory(
        self, session: Session, path: str, source: Directory, **kw: Any
    ) -> Container:
        exclude, owner = tuple(kw.pop("exclude", None) or ()), kw.pop("owner", "")
        if kw.pop("include", None):
            raise EngineError("local engine: Container.withDirectory(include:) is not modelled")
        refuse_unmodelled("Container.withDirectory", kw, set())
        return self.then("directory", _absolute(path), source, exclude, owner)

    def with_mounted_directory(
        self, session: Session, path: str, source: Directory, owner: str = "", **kw: Any
    ) -> Container:
        refuse_unmodelled("Container.withMountedDirectory", kw, set())
        return self.then("mountDirectory", _absolute(path), source, owner)

    def with_mounted_file(
        self, session: Session, path: str, source: File, owner: str = "", **kw: Any
    ) -> Container:
        refuse_unmodelled("Container.withMountedFile", kw, set())
        return self.then("mountFile", _absolute(path), source, owner)

    def with_mounted_secret(
        self,
        session: Session,
        path: str,
        source: Secret,
        owner: str = "",
        mode: int = 0o400,
        **kw: Any,
    ) -> Container:
        refuse_unmodelled("Container.withMountedSecret", kw, set())
        return self.then("mountSecret", _absolute(path), source, owner, mode)

    def with_mounted_cache(
        self, session: Session, path: str, cache: CacheVolume, **kw: Any
    ) -> Container:
        sharing, owner = kw.pop("sharing", "SHARED"), kw.pop("owner", "")
        if kw.pop("source", None) is not None:
            raise EngineError("local engine: withMountedCache(source:) is not modelled")
        refuse_unmodelled("Container.withMountedCache", kw, set())
        return self.then("mountCache", _absolute(path), cache, sharing, owner)

    def without_mount(self, session: Session, path: str, **kw: Any) -> Container:
        refuse_unmodelled("Container.withoutMount", kw, set())
        return self.then("unmount", _absolute(path))

    def with_service_binding(self, session: Session, alias: str, service: Service) -> Container:
        return self.then("service", alias, service)

    # ----- execution ----------------------------------------------------------------------

    def with_exec(self, session: Session, args: list[str], **kw: Any) -> Container:
        use_entrypoint = bool(kw.pop("use_entrypoint", False))
        expect = kw.pop("expect", "SUCCESS")
        privileged = bool(kw.pop("insecure_root_capabilities", False))
        no_init = bool(kw.pop("no_init", False))
        refuse_unmodelled("Container.withExec", kw, set())
        return self.then("exec", tuple(args), use_entrypoint, expect, privileged, no_init)

    # ----- leaves -------------------------------------------------------------------------

    async def sync(self, session: Session) -> str:
        await evaluate.state(session, self)
        return session.store.register(self)

    async def stdout(self, session: Session) -> str:
        return (await evaluate.last_exec(session, self)).stdout

    async def stderr(self, session: Session) -> str:
        return (await evaluate.last_exec(session, self)).stderr

    async def exit_code(self, session: Session) -> int:
        return (await evaluate.last_exec(session, self)).exit_code

    async def platform(self, session: Session) -> str:
        return self.platform_name

    async def user(self, session: Session) -> str:
        return (await evaluate.state(session, self)).user

    async def workdir(self, session: Session) -> str:
        return (await evaluate.state(session, self)).workdir

    async def env_variable(self, session: Session, name: str) -> str | None:
        return dict((await evaluate.state(session, self)).env).get(name)

    async def label(self, session: Session, name: str) -> str | None:
        return dict((await evaluate.state(session, self)).labels).get(name)

    async def entrypoint(self, session: Session) -> list[str]:
        return list((await evaluate.state(session, self)).entrypoint)

    def file(self, session: Session, path: str, **kw: Any) -> File:
        refuse_unmodelled("Container.file", kw, set())
        return File("inContainer", (_absolute(path),), self)

    def directory(self, session: Session, path: str, **kw: Any) -> Directory:
        refuse_unmodelled("Container.directory", kw, set())
        return Directory("inContainer", (_absolute(path),), self)

    def as_tarball(self, session: Session, **kw: Any) -> File:
        # The defaults (gzip, OCI types) are what the engine writes; others are not modelled.
        kw = {k: v for k, v in kw.items() if k not in _EXPORT_DEFAULTS or _EXPORT_DEFAULTS[k] != v}
        refuse_unmodelled("Container.asTarball", kw, set())
        return File("tarball", (), self)

    async def export(self, session: Session, path: str, **kw: Any) -> str:
        tarball = await self.as_tarball(session, **kw).export(session, path)
        return tarball

    def as_service(self, session: Session, **kw: Any) -> Service:
        from .services import Service

        args = tuple(kw.pop("args", None) or ())
        use_entrypoint = bool(kw.pop("use_entrypoint", False))
        refuse_unmodelled("Container.asService", kw, set())
        return Service(self, args, use_entrypoint)

    async def publish(
        self,
        session: Session,
        address: str,
        platform_variants: list[Container] | None = None,
        **kw: Any,
    ) -> str:
        kw = {k: v for k, v in kw.items() if k not in _EXPORT_DEFAULTS or _EXPORT_DEFAULTS[k] != v}
        refuse_unmodelled("Container.publish", kw, set())
        return await evaluate.publish(session, self, address, platform_variants)


# Export options at the values the engine defaults to (OCI media types; no forced compression).
_EXPORT_DEFAULTS: dict[str, Any] = {"media_types": "OCIMediaTypes", "forced_compression": None}


def _absolute(path: str) -> str:
    if not path.startswith("/"):  # the engine resolves these against the workdir
        raise EngineError(f"local engine: relative container path {path!r} is not modelled")
    return "/" + clean(path)

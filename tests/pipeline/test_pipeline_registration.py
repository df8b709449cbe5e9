"""The SDK's own registration path run over the module: `Module._typedefs()` builds the type
definitions the engine would load (`dagger functions`, `--help`), sent to the fake engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import dagger.mod
import pytest

from onnx_serving import gate
from onnx_serving.main import OnnxServing
from onnx_serving.variants import Variant

from .plan import Call, calls, fake_engine, find, only


@pytest.fixture(scope="module")
def registration() -> Iterator[list[Call]]:
    """The one query `_typedefs()` sends: module().with…(…).id()."""
    module = dagger.mod._default_mod  # where @object_type and enum_type registered everything
    saved = module._main_name, module._main
    module._main_name = OnnxServing.__name__  # the runtime sets it from the entry point
    module._main = module.get_object(OnnxServing.__name__)
    try:
        with fake_engine({"id": lambda chain: "module-id"}) as engine:
            assert asyncio.run(module._typedefs()) == "module-id"
    finally:
        module._main_name, module._main = saved
    [query] = engine.queries
    yield query


def _type(type_def: Any) -> list[tuple[str, dict[str, Any]]]:
    """A TypeDef's chain, list element types expanded in place."""
    chain: list[tuple[str, dict[str, Any]]] = []
    for c in calls(type_def):
        chain.append((c.name, c.args))
        if c.name == "withListOf":
            chain += _type(c.args["elementType"])
    return chain


def _enum(registration: list[Call], name: str) -> list[Call]:
    for call in find(registration, "withEnum"):
        chain = calls(call.args["enum"])
        if only(chain, "withEnum").args["name"] == name:
            return chain
    raise AssertionError(f"no enum {name} registered")


def test_the_severity_enum_is_the_gates_order(registration: list[Call]) -> None:
    members = [c.args["name"] for c in find(_enum(registration, "Severity"), "withEnumMember")]
    assert tuple(members) == gate.SEVERITIES


def test_the_variant_enum_is_the_table(registration: list[Call]) -> None:
    enum = _enum(registration, "Variant")
    assert only(enum, "withEnum").args["name"] == "Variant"
    members = [c.args for c in find(enum, "withEnumMember")]
    assert [m["name"] for m in members] == [v.value for v in Variant]
    assert [m["value"] for m in members] == [v.value for v in Variant]
    assert all(m["description"] == Variant(m["name"]).spec.description for m in members)


def test_every_variant_argument_is_the_enum(registration: list[Call]) -> None:
    main = calls(only(registration, "withObject").args["object"])
    variant_args = {}
    for function in find(main, "withFunction"):
        chain = calls(function.args["function"])
        name = chain[0].args["name"]
        for arg in find(chain, "withArg"):
            if arg.args["name"] in ("variant", "variants"):
                variant_args[name] = [c for c, _ in _type(arg.args["typeDef"])]
                enum = [a for c, a in _type(arg.args["typeDef"]) if c == "withEnum"]
                if enum:
                    assert enum[0]["name"] == "Variant", name
    assert variant_args == {
        "benchmark": ["typeDef", "withEnum"],
        "build": ["typeDef", "withEnum"],
        "manifests": ["typeDef", "withEnum"],
        "sbom": ["typeDef", "withEnum"],
        "serve": ["typeDef", "withEnum"],
        "scan": ["typeDef", "withOptional", "withEnum", "withOptional"],
        "publish": ["typeDef", "withOptional", "withListOf", "typeDef", "withEnum", "withOptional"],
    }


def test_publish_reads_the_checkouts_git_repository(registration: list[Call]) -> None:
    # A GitRepository with a DefaultPath: the engine hands over the module's own checkout's
    # repository (a clone, a worktree or a submodule), not its .git folder uploaded.
    main = calls(only(registration, "withObject").args["object"])
    publish = next(
        calls(f.args["function"])
        for f in find(main, "withFunction")
        if calls(f.args["function"])[0].args["name"] == "publish"
    )
    [git] = [a.args for a in find(publish, "withArg") if a.args["name"] == "git"]
    optional = ("withOptional", {"optional": True})
    assert _type(git["typeDef"]) == [
        ("typeDef", {}),
        optional,
        ("withObject", {"name": "GitRepository"}),
        optional,
    ]
    assert git["defaultPath"] == "/.git"


def invoke(function: str, inputs: dict[str, Any], engine_answers: dict[str, Any]) -> Any:
    """What the runtime does when the engine calls a function: the parent object from its
    JSON state, arguments from their JSON values, the result unstructured (an ID for objects)."""
    module = dagger.mod._default_mod
    parent = {"source": "source-directory-id", "version": "", "revision": "", "created": ""}
    parent |= {"sourceUrl": "", "baseImage": ""}
    with fake_engine(engine_answers) as engine:
        result = asyncio.run(module.get_result("OnnxServing", parent, function, inputs))
    return result, engine


def test_the_runtime_turns_cli_values_into_the_enum_and_platform() -> None:
    result, engine = invoke(
        "build", {"variant": "gpu", "platform": "linux/amd64"}, {"id": lambda chain: "ctr-id"}
    )
    assert result == "ctr-id"
    [query] = engine.queries
    assert query[0].args == {"id": "source-directory-id"}  # the engine's Directory, by ID
    build = only(query, "dockerBuild").args
    assert (build["target"], build["platform"]) == ("gpu", "linux/amd64")


def test_an_unknown_variant_is_refused_before_the_function_runs() -> None:
    """(The engine already refuses it: the enum is a GraphQL enum; this is the SDK's own.)"""
    with pytest.raises(Exception, match="argument 'variant'"):
        invoke("build", {"variant": "tpu"}, {})

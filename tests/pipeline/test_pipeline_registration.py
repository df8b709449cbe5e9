"""The SDK's own registration path run over the module: `Module._typedefs()` builds the type
definitions the engine would load (`dagger functions`, `--help`), sent to the fake engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import dagger.mod
import pytest

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


def test_the_variant_enum_is_the_table(registration: list[Call]) -> None:
    enum = calls(only(registration, "withEnum").args["enum"])
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
        "sbom": ["typeDef", "withEnum"],
        "serve": ["typeDef", "withEnum"],
        "scan": ["typeDef", "withOptional", "withEnum", "withOptional"],
        "publish": ["typeDef", "withOptional", "withListOf", "typeDef", "withEnum", "withOptional"],
    }

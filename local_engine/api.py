"""The engine's GraphQL API, served from the vendored schema with resolvers that model it.

The SDK is unchanged: it fetches the schema by introspection, builds its queries from it and
sends them over HTTP, exactly as it does to a real engine. Every field is resolved by a method
of the Python object standing for its parent (`Container.with_exec` for `Container.withExec`);
a field with no such method is refused with an error naming it, never answered with a guess.
Object arguments arrive as IDs and are looked up in the session's store.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import traceback
from functools import cache
from pathlib import Path
from typing import Any

import graphql

from .errors import EngineError
from .session import Session

SCHEMA_FILE = Path(__file__).with_name("schema.graphqls")


@cache
def schema() -> graphql.GraphQLSchema:
    return graphql.build_schema(SCHEMA_FILE.read_text())


def snake(name: str) -> str:
    """`withExec` -> `with_exec`; `from` -> `from_` (a Python keyword)."""
    converted = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return f"{converted}_" if converted in {"from", "import"} else converted


async def resolve_field(parent: Any, info: graphql.GraphQLResolveInfo[Any], **args: Any) -> Any:
    """Call the parent object's method for this field with the arguments, IDs resolved."""
    session: Session = info.context
    if isinstance(parent, dict):  # plain values (FunctionCallArgValue, Port) are dicts
        return parent.get(info.field_name)
    method = getattr(parent, snake(info.field_name), None)
    if method is None or not callable(method):
        type_name = info.parent_type.name
        raise EngineError(f"local engine: {type_name}.{info.field_name} is not modelled")
    kwargs = {snake(k): session.store.resolve(v) for k, v in args.items()}
    result = method(session, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def resolve_type(value: Any, info: graphql.GraphQLResolveInfo[Any], _type: Any) -> str:
    """The concrete type of an object loaded through `node(id:)`."""
    return str(value.type_name)


async def execute(
    session: Session, query: str, variables: dict[str, Any] | None, root: Any
) -> dict[str, Any]:
    """One GraphQL request, answered as the engine answers it (data and errors)."""
    result = await graphql.graphql(
        schema(),
        query,
        root_value=root,
        context_value=session,
        variable_values=variables,
        field_resolver=resolve_field,
        type_resolver=resolve_type,
    )
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [_error(e) for e in result.errors]
    return body


def _error(error: graphql.GraphQLError) -> dict[str, Any]:
    formatted = dict(error.formatted)
    original = error.original_error
    if os.environ.get("LOCAL_ENGINE_DEBUG") and original is not None:
        traceback.print_exception(original, file=sys.stderr)
    if isinstance(original, EngineError) and original.extensions:
        formatted["extensions"] = original.extensions
    return formatted

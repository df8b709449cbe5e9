"""Example inputs for any served model, from its metadata (`GET /v2/models/{m}`) alone.

The smoke test and the load generator build their requests here, so they work for every model
with tensor inputs, not only the bundled one: each input gets its declared datatype and shape,
with variable dimensions (-1) set to the batch size (the first) or 1 (any other). Values are
deterministic and safe for the common cases: small non-negative integers (valid indices),
small floats, alternating booleans, short strings. Stdlib only (the load generator runs it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INTEGER_TYPES = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
FLOAT_TYPES = ("FP16", "FP32", "FP64")
DATATYPES = ("BOOL", *INTEGER_TYPES, *FLOAT_TYPES, "BYTES")


class MetadataError(ValueError):
    """Model metadata this client cannot build a request from; the message says which part."""


@dataclass(frozen=True)
class ExampleInput:
    """One input tensor: protocol name, datatype, concrete shape and flat row-major values."""

    name: str
    datatype: str
    shape: list[int]
    values: list[Any]

    def as_json(self) -> dict[str, Any]:
        """The input as an Open Inference Protocol v2 JSON tensor."""
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": self.shape,
            "data": self.values,
        }


def concrete_shape(shape: Sequence[int], batch: int) -> list[int]:
    """`shape` with -1 as `batch` in the first place and 1 anywhere else."""
    return [(batch if i == 0 else 1) if int(d) < 0 else int(d) for i, d in enumerate(shape)]


def example_values(datatype: str, count: int, seed: int = 0) -> list[Any]:
    """`count` deterministic values of a datatype (see the module docstring)."""
    if datatype == "BOOL":
        return [(i + seed) % 2 == 0 for i in range(count)]
    if datatype in INTEGER_TYPES:
        return [(i + seed) % 4 for i in range(count)]
    if datatype in FLOAT_TYPES:
        return [round(math.sin(i + seed + 1), 3) for i in range(count)]
    if datatype == "BYTES":
        return [f"example-{(i + seed) % 4}" for i in range(count)]
    raise MetadataError(f"datatype {datatype!r} is not one of {', '.join(DATATYPES)}")


def example_inputs(metadata: Mapping[str, Any], batch: int = 1) -> list[ExampleInput]:
    """An example for every input of the model described by `metadata`."""
    inputs = metadata.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise MetadataError(f"model {metadata.get('name')!r} lists no inputs in its metadata")
    examples = []
    for n, spec in enumerate(inputs):
        try:
            name, datatype, shape = spec["name"], spec["datatype"], spec["shape"]
        except (KeyError, TypeError):
            raise MetadataError(f"input {n} lacks name, datatype or shape: {spec!r}") from None
        concrete = concrete_shape(shape, batch)
        examples.append(
            ExampleInput(name, datatype, concrete, example_values(datatype, math.prod(concrete), n))
        )
    return examples


def output_shape_fits(declared: Sequence[int], actual: Sequence[int]) -> bool:
    """Whether an output's shape is what the metadata declares (-1 = any size)."""
    if len(declared) != len(actual):
        return False
    return all(int(d) < 0 or int(d) == int(a) for d, a in zip(declared, actual, strict=True))

"""The two readers of JSON tensor data agree: orjson's Python numbers (small requests) and the
text path (simdjson straight into numpy, FAST_MIN_BYTES and up) give the same arrays and
refuse the same values, whatever the datatype, and the text path never cuts anything but a
``"data"`` array of numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import service.json_tensors as json_tensors
from service.errors import BadRequest
from service.protocol import InferenceRequest, parse_inference_request
from service.tensors import NUMPY_DTYPES, TensorSpec

NUMERIC = [name for name, dtype in NUMPY_DTYPES.items() if dtype.kind in "iuf"]
BUDGET = 1 << 30
OUTPUTS = {"y": TensorSpec("y", "FP32", (-1,))}


def parse(body: bytes, datatype: str) -> InferenceRequest:
    return parse_inference_request(
        body, {}, {"x": TensorSpec("x", datatype, (-1,))}, OUTPUTS, budget=BUDGET
    )


def request(datatype: str, values_text: bytes, count: int, extra: bytes = b"") -> bytes:
    return b'{"inputs":[{"name":"x","datatype":"%s","shape":[%d],"data":[%s]}]%s}' % (
        datatype.encode(),
        count,
        values_text,
        extra,
    )


def both_readers(datatype: str, tokens: list[bytes]) -> tuple[Any, Any]:
    """(small-request answer, text-path answer) for the same tokens: each an array, or the
    BadRequest it raised. The text path's request repeats the tokens past FAST_MIN_BYTES."""
    answers: list[Any] = []
    repeats = json_tensors.FAST_MIN_BYTES // max(1, len(b",".join(tokens))) + 1
    for times in (1, repeats):
        joined = b",".join(tokens * times)
        body = request(datatype, joined, len(tokens) * times)
        assert (len(body) >= json_tensors.FAST_MIN_BYTES) == (times > 1)
        try:
            answers.append(parse(body, datatype).inputs["x"][: len(tokens)])
        except BadRequest as exc:
            answers.append(exc)
    return answers[0], answers[1]


def token_for(datatype: str) -> st.SearchStrategy[bytes]:
    """JSON numbers a client may send for `datatype`, in range or (sometimes) not."""
    dtype = NUMPY_DTYPES[datatype]
    if dtype.kind == "f":
        floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
        return st.one_of(
            floats.map(lambda v: orjson.dumps(v)),
            st.integers(-(2**70), 2**70).map(lambda v: str(v).encode()),
            st.sampled_from([b"1e39", b"-1e39", b"1e-50", b"7e4", b"65504", b"1E+2", b"-0"]),
        )
    limits = np.iinfo(dtype)
    wide = st.integers(int(limits.min) - 2, int(limits.max) + 2)
    edges = st.sampled_from([limits.min, limits.max, limits.min - 1, limits.max + 1, 0, 1])
    return st.one_of(
        wide.map(lambda v: str(v).encode()),
        edges.map(lambda v: str(int(v)).encode()),
        st.sampled_from([b"1.5", b"1e2", b"-0", b"2.0"]),
    )


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(NUMERIC).flatmap(
        lambda d: st.tuples(st.just(d), st.lists(token_for(d), min_size=1, max_size=8))
    )
)
def test_both_readers_agree_on_every_numeric_datatype(case: tuple[str, list[bytes]]) -> None:
    datatype, tokens = case
    small, large = both_readers(datatype, tokens)
    if isinstance(small, BadRequest) or isinstance(large, BadRequest):
        assert isinstance(small, BadRequest) and isinstance(large, BadRequest), (small, large)
        return
    assert small.dtype == large.dtype == NUMPY_DTYPES[datatype]
    # Equal as numbers (a "-0" may come back as either zero: JSON leaves its sign open).
    assert np.array_equal(small, large), (tokens, small, large)


@pytest.mark.parametrize(
    ("datatype", "token", "named"),
    [
        ("FP32", b"+1", "not a list of valid FP32 numbers"),
        ("FP32", b".5", "not a list of valid FP32 numbers"),
        ("FP32", b"01", "not a list of valid FP32 numbers"),
        ("FP32", b"1e39", "out of range for FP32"),
        ("FP64", b"1e400", "out of range for FP64"),
        ("INT32", b"1.5", "float values"),
        ("UINT8", b"-1", "out of range for UINT8"),
        ("UINT8", b"256", "out of range for UINT8"),
        ("INT64", b"9223372036854775808", "out of range for INT64"),
        ("UINT64", b"18446744073709551616", "out of range for UINT64"),
    ],
)
def test_the_text_path_names_what_is_wrong(datatype: str, token: bytes, named: str) -> None:
    """simdjson refuses, and the careful reader says why (the value far into the array)."""
    count = json_tensors.FAST_MIN_BYTES // 2 + 1
    body = request(datatype, b"1," * (count - 1) + token, count)
    with pytest.raises(BadRequest, match=named):
        parse(body, datatype)


def test_the_text_path_reads_numbers_without_the_careful_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Valid numbers never need the slow reader: simdjson decodes them alone."""

    def slow_reader(*_: object) -> np.ndarray:
        raise AssertionError("the slow reader ran on valid numbers")

    monkeypatch.setattr(json_tensors, "_parse_chunk", slow_reader)
    values = np.random.default_rng(3).standard_normal(4096).astype(np.float32)
    body = request("FP32", b",".join(orjson.dumps(float(v)) for v in values), values.size)
    assert len(body) >= json_tensors.FAST_MIN_BYTES
    assert np.array_equal(parse(body, "FP32").inputs["x"], values)


def test_only_data_arrays_of_numbers_are_cut() -> None:
    """A string that spells ``"data": [`` (its quotes escaped) and a ``data`` of strings stay
    as they were; the request id comes back byte for byte."""
    spelled = '"data": [' + "1," * 4000 + "2]"
    body = orjson.dumps(
        {
            "id": spelled,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}],
            "parameters": {"note": {"data": ["a"] * 3000}},
        }
    )
    assert len(body) >= json_tensors.FAST_MIN_BYTES
    parsed = parse(body, "FP32")
    assert parsed.id == spelled
    assert parsed.inputs["x"].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("datatype", NUMERIC)
@pytest.mark.parametrize("boolean", [b"true", b"false"])
def test_booleans_among_numbers_are_refused_on_both_paths(datatype: str, boolean: bytes) -> None:
    """Whether or not the other numbers hold a 0 or a 1 (struct packs true as 1, false as 0)."""
    for filler in (b"0", b"1", b"2", b"7"):
        for times in (1, json_tensors.FAST_MIN_BYTES // 2):
            body = request(datatype, (filler + b",") * times + boolean, times + 1)
            with pytest.raises(BadRequest, match="true/false"):
                parse(body, datatype)


def test_nested_data_keys_are_looked_at_once_per_array(monkeypatch: pytest.MonkeyPatch) -> None:
    """256 KiB of `"data":[` before one `]`: each array's text is checked once, not once per
    key inside it (which took seconds on the event loop), and the body is refused as JSON."""
    checked: list[int] = []
    only_numbers = json_tensors._only_number_bytes

    def counting(span: memoryview) -> bool:
        checked.append(len(span))
        return only_numbers(span)

    monkeypatch.setattr(json_tensors, "_only_number_bytes", counting)
    body = b'{"inputs":[{"data":[' + b'"data":[' * (1 << 15) + b"]}]}"
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse(body, "FP32")
    assert len(checked) <= 1, len(checked)


@pytest.mark.parametrize("datatype", ["INT64", "UINT8"])
def test_an_integer_of_thousands_of_digits_is_out_of_range(datatype: str) -> None:
    count = json_tensors.FAST_MIN_BYTES // 2
    body = request(datatype, b"1," * (count - 1) + b"1" * 4301, count)
    with pytest.raises(BadRequest, match=f"out of range for {datatype}"):
        parse(body, datatype)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        (b"1," * ((1 << 19) + 1), (1 << 19) + 1),  # a trailing comma right at a chunk's end
        (b"1," * ((1 << 19) + 1) + b" " * (1 << 20) + b",2", (1 << 19) + 3),  # "1, ,2"
    ],
)
def test_an_empty_value_at_a_chunk_boundary_is_refused(text: bytes, count: int) -> None:
    with pytest.raises(BadRequest, match="not a list of valid FP32 numbers"):
        parse(request("FP32", text, count), "FP32")


def test_a_number_longer_than_a_chunk_is_refused_before_conversion() -> None:
    text = b"1," + b"1" * (3 * json_tensors.CHUNK_BYTES)
    with pytest.raises(BadRequest, match="a number of more than"):
        parse(request("FP64", text, 2), "FP64")


@pytest.mark.parametrize(
    ("numbers", "valid"), [(b"1," * 2000 + b"2", True), (b"1,,2," * 600 + b"3", False)]
)
def test_a_cut_array_no_input_reads_is_checked_like_the_rest(numbers: bytes, valid: bool) -> None:
    """A long numeric "data" in parameters is cut out too; orjson would have refused a bad
    one, and so does the text path."""
    for padding in (b"", b" " * json_tensors.FAST_MIN_BYTES):
        extra = b',"parameters":{"note":{"data":[%s]}}%s' % (numbers, padding)
        body = request("FP32", b"1,2,3", 3, extra)
        if valid:
            assert parse(body, "FP32").inputs["x"].tolist() == [1.0, 2.0, 3.0]
        else:
            with pytest.raises(BadRequest, match="not valid JSON"):
                parse(body, "FP32")

"""HTTP content codings of inference bodies, both ways, as Triton handles them.

A request may arrive with ``Content-Encoding: gzip`` or ``deflate`` (tritonclient's
``request_compression_algorithm``); it is inflated with its size capped at MAX_BODY_BYTES, so a
small compressed body cannot expand without bound. A response is compressed when the client's
``Accept-Encoding`` asks for gzip or deflate (``response_compression_algorithm``). The binary
extension's ``Inference-Header-Content-Length`` always counts uncompressed bytes.
"""

from __future__ import annotations

import zlib

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, show

CODINGS = ("gzip", "deflate")
# zlib's window bits: gzip wrapper, zlib wrapper (HTTP's "deflate"), and raw deflate, which
# some clients send as "deflate" too.
_GZIP, _ZLIB, _RAW = 31, 15, -15
LEVEL = 6  # zlib's default, as Triton uses


def decode_body(body: bytes, coding: str | None, limit: int) -> bytes:
    """The request body with its Content-Encoding undone (at most `limit` bytes)."""
    if coding is None:
        return body
    name = coding.strip().lower()
    if name in ("", "identity"):
        return body
    if name not in CODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {show(coding)} is not supported; use gzip, deflate or identity"
        )
    if name == "gzip":
        wbits = _GZIP
    else:
        zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and int.from_bytes(body[:2]) % 31 == 0
        wbits = _ZLIB if zlib_header else _RAW
    inflater = zlib.decompressobj(wbits)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"request body is not valid {name} data: {exc}") from None
    if len(inflated) > limit:
        raise PayloadTooLarge(f"request body inflates to more than MAX_BODY_BYTES={limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise BadRequest(f"request body is not valid {name} data: truncated or trailing bytes")
    return inflated


def response_coding(accept_encoding: str | None) -> str | None:
    """The coding to answer with: gzip or deflate if the client accepts one (q > 0)."""
    if not accept_encoding:
        return None
    accepted: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        token, _, parameters = part.partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        accepted[token.strip()] = quality
    for name in CODINGS:
        if accepted.get(name, 0.0) > 0:
            return name
    return None


def encode_body(body: bytes, coding: str) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP if coding == "gzip" else _ZLIB)
    return compressor.compress(body) + compressor.flush()

"""HTTP content codings of inference bodies, both ways, as Triton handles them.

A request may arrive with ``Content-Encoding: gzip`` (or ``x-gzip``, its old name, which
RFC 9110 makes the same) or ``deflate`` (tritonclient's ``request_compression_algorithm``); it is
inflated with its size capped at MAX_BODY_BYTES, so a small compressed body cannot expand
without bound. A gzip body may hold several members, one after another (``cat a.gz b.gz``, or
BGZF blocks): their inflated sizes add up under that cap, and at most MAX_GZIP_MEMBERS of them
are read, so a body of tiny members cannot cost a Python step per 20 bytes.

A response is compressed when the client's ``Accept-Encoding`` asks for gzip or deflate
(``response_compression_algorithm``). The binary extension's
``Inference-Header-Content-Length`` always counts uncompressed bytes.
"""

from __future__ import annotations

import zlib

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, short_repr

CODINGS = ("gzip", "deflate")
ALIASES = {"x-gzip": "gzip"}  # RFC 9110, 8.4.1.3
MAX_GZIP_MEMBERS = 4096  # BGZF writes one member per 64 KiB: 256 MiB of data
MEMBER_WINDOW = 64 * 1024  # later members are fed this much at a time (see _more_members)
# zlib's window bits: gzip wrapper, zlib wrapper (HTTP's "deflate"), and raw deflate, which
# some clients send as "deflate" too.
_GZIP, _ZLIB, _RAW = 31, 15, -15
LEVEL = 6  # zlib's default, as Triton uses


def decode_body(body: bytes, coding: str | None, limit: int) -> bytes:
    """The request body with its Content-Encoding undone (at most `limit` bytes)."""
    if coding is None:
        return body
    name = coding.strip().lower()
    name = ALIASES.get(name, name)
    if name in ("", "identity"):
        return body
    if name not in CODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {short_repr(coding)} is not supported; "
            "use gzip (x-gzip), deflate or identity"
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
        raise _invalid(name, str(exc)) from None
    if len(inflated) > limit:
        raise _inflates_too_far(limit)
    if not inflater.eof:
        raise _invalid(name, "truncated")
    if not inflater.unused_data:
        return inflated
    if wbits != _GZIP:
        raise _invalid(name, "trailing bytes")
    # Another gzip member follows. unused_data is a copy of all the rest: taken once, here.
    offset = len(body) - len(inflater.unused_data)
    del inflater
    return _more_members(memoryview(body), offset, inflated, limit)


def _more_members(body: memoryview, offset: int, first: bytes, limit: int) -> bytes:
    """The members of a gzip body after the first (which inflated to `first`), from `offset`.

    Each is fed MEMBER_WINDOW bytes at a time, so that what zlib copies at a member's end (the
    input left over) stays small however many members follow."""
    parts, size, members = [first], len(first), 1
    while offset < len(body):
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise BadRequest(
                f"gzip request body has more than MAX_GZIP_MEMBERS={MAX_GZIP_MEMBERS} members"
            )
        inflater = zlib.decompressobj(_GZIP)
        while not inflater.eof:
            if offset == len(body):
                raise _invalid("gzip", "truncated")
            window = body[offset : offset + MEMBER_WINDOW]
            try:
                part = inflater.decompress(window, limit + 1 - size)
            except zlib.error as exc:
                raise _invalid("gzip", str(exc)) from None
            size += len(part)
            if size > limit:
                raise _inflates_too_far(limit)
            parts.append(part)
            left = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            offset += len(window) - len(left)
    # The members' output is held twice while joined, before anything is decoded from it:
    # within the request's budget (docs/LIMITS.md).
    return b"".join(parts)


def _invalid(name: str, reason: str) -> BadRequest:
    return BadRequest(f"request body is not valid {name} data: {reason}")


def _inflates_too_far(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body inflates to more than MAX_BODY_BYTES={limit} bytes")


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

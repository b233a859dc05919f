"""The DATA encoder, the BDAT line-end normaliser, un-stuffing and body classification.

The properties compare the whole-buffer implementation with an obviously correct regex
model, under every chunking hypothesis can find.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_smtp.protocol import LocalProtocolError
from trio_smtp.protocol._data import (
    BodyInspector,
    BodyKind,
    DataEncoder,
    LineEndingNormalizer,
    encode_data,
    normalize_line_endings,
)
from trio_smtp.testing import decode_data

# ---------------------------------------------------------------- models and strategies

_LINE_END = re.compile(rb"\r\n|\r|\n")


def model_normalize(body: bytes) -> bytes:
    out = _LINE_END.sub(b"\r\n", body)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def model_encode(body: bytes) -> bytes:
    return re.sub(rb"(?m)^\.", b"..", model_normalize(body)) + b".\r\n"


def model_kind(body: bytes) -> BodyKind:
    if b"\0" in body or max(map(len, _LINE_END.split(body))) > 998:
        return BodyKind.BINARY
    return BodyKind.SEVEN_BIT if body.isascii() else BodyKind.EIGHT_BIT


# Bodies made of the pieces that matter: line ends, dots, 8-bit, NUL, and runs that build
# lines near the 998-octet limit.
_pieces = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"From x", b"\xc3\xa9", b"\0", b"x" * 499]
)
bodies = st.one_of(st.lists(_pieces, max_size=30).map(b"".join), st.binary(max_size=300))


def cut(draw: st.DrawFn, body: bytes) -> list[bytes]:
    """``body`` cut into chunks at arbitrary points (empty chunks included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=8)))
    bounds = [0, *cuts, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def chunked(draw: st.DrawFn) -> list[bytes]:
    """A body in arbitrary chunks."""
    return cut(draw, draw(bodies))


@st.composite
def two_chunkings(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """One body, chunked in two independent ways."""
    body = draw(bodies)
    return cut(draw, body), cut(draw, body)


def encode_chunks(chunks: list[bytes]) -> bytes:
    encoder = DataEncoder()
    return b"".join(encoder.encode(c) for c in chunks) + encoder.finish()


# ---------------------------------------------------------------- DataEncoder examples


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # An empty body: the CRLF ending "DATA" is the first half of CRLF.CRLF.
        (b"", b".\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
        (b"a\rb\r", b"a\r\nb\r\n.\r\n"),
        (b"a\r\rb", b"a\r\n\r\nb\r\n.\r\n"),
        (b"a\n\rb", b"a\r\n\r\nb\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\r.b\r\n..c", b"a\r\n..b\r\n...c\r\n.\r\n"),
        (b"a.b\r\n", b"a.b\r\n.\r\n"),  # a dot inside a line is left alone
        (b"\r\n.\r\n", b"\r\n..\r\n.\r\n"),  # a body cannot smuggle the terminator
        # Mixed line ends: CRLF with bare LFs, with bare CRs, and CR/LF in the wrong order.
        (b"a\r\nb\nc\r\n", b"a\r\nb\r\nc\r\n.\r\n"),
        (b"a\r\nb\rc\r\n", b"a\r\nb\r\nc\r\n.\r\n"),
        (b"a\r\nb\n\rc\r\n", b"a\r\nb\r\n\r\nc\r\n.\r\n"),
        (b"\na\r\n", b"\r\na\r\n.\r\n"),
        (b"a\r\nb\r", b"a\r\nb\r\n.\r\n"),
    ],
)
def test_encode_data_examples(body: bytes, expected: bytes) -> None:
    assert encode_data(body) == expected


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    assert encode_chunks([b"a\r", b"\nb"]) == b"a\r\nb\r\n.\r\n"
    assert encode_chunks([b"a\r", b"", b"\nb"]) == b"a\r\nb\r\n.\r\n"
    # A CR ending a chunk and another CR starting the next: two line ends.
    assert encode_chunks([b"a\r", b"\rb"]) == b"a\r\n\r\nb\r\n.\r\n"
    # Only one LF is absorbed by a trailing CR.
    assert encode_chunks([b"a\r", b"\n", b"\n"]) == b"a\r\n\r\n.\r\n"


def test_dot_at_chunk_start_is_stuffed_only_at_a_line_start() -> None:
    assert encode_chunks([b"a\r\n", b".b"]) == b"a\r\n..b\r\n.\r\n"
    assert encode_chunks([b"a\r", b"\n.b"]) == b"a\r\n..b\r\n.\r\n"
    assert encode_chunks([b"a", b".b"]) == b"a.b\r\n.\r\n"
    assert encode_chunks([b".", b"."]) == b"...\r\n.\r\n"


def test_clean_crlf_chunk_is_not_copied() -> None:
    chunk = b"line one\r\nline two\r\n" * 100
    assert DataEncoder().encode(chunk) is chunk
    # Dots inside lines need no stuffing either.
    chunk = b"Sentence one. Two.\r\nend.\r\n" * 100
    assert DataEncoder().encode(chunk) is chunk


def test_accepts_memoryview_and_bytearray() -> None:
    encoder = DataEncoder()
    out = encoder.encode(memoryview(b"xx.a\nb")[2:]) + encoder.encode(bytearray(b"\n.c"))
    assert out + encoder.finish() == b"..a\r\nb\r\n..c\r\n.\r\n"


def test_encode_after_finish_is_refused() -> None:
    encoder = DataEncoder()
    encoder.finish()
    with pytest.raises(LocalProtocolError):
        encoder.encode(b"more")
    with pytest.raises(LocalProtocolError):
        encoder.finish()


def test_normalizer_does_not_stuff() -> None:
    assert normalize_line_endings(b".a\n.\rb") == b".a\r\n.\r\nb\r\n"
    assert normalize_line_endings(b"") == b""
    normalizer = LineEndingNormalizer()
    out = normalizer.encode(b".x\r") + normalizer.encode(b"\n.y\r\n")
    assert out + normalizer.finish() == b".x\r\n.y\r\n"


# ---------------------------------------------------------------- properties


@given(chunked())
def test_encoder_matches_model_under_any_chunking(chunks: list[bytes]) -> None:
    assert encode_chunks(chunks) == model_encode(b"".join(chunks))


@given(chunked())
def test_terminator_appears_once_at_the_end(chunks: list[bytes]) -> None:
    # On the wire the DATA command line's CRLF comes first.
    wire = b"DATA\r\n" + encode_chunks(chunks)
    assert wire.count(b"\r\n.\r\n") == 1
    assert wire.endswith(b"\r\n.\r\n")


@given(chunked())
def test_no_bare_cr_or_lf_in_output(chunks: list[bytes]) -> None:
    out = encode_chunks(chunks)
    pairs = out.count(b"\r\n")
    assert out.count(b"\r") == pairs
    assert out.count(b"\n") == pairs


@given(chunked())
def test_unstuffing_returns_normalised_body(chunks: list[bytes]) -> None:
    body = b"".join(chunks)
    payload = encode_chunks(chunks)[:-3]  # without the ".\r\n" terminator line
    assert decode_data(payload) == normalize_line_endings(body) == model_normalize(body)


@given(two_chunkings())
def test_output_identical_under_any_chunking(pair: tuple[list[bytes], list[bytes]]) -> None:
    first, second = pair
    assert encode_chunks(first) == encode_chunks(second) == encode_data(b"".join(first))


@given(chunked())
def test_normalizer_matches_model_under_any_chunking(chunks: list[bytes]) -> None:
    normalizer = LineEndingNormalizer()
    out = b"".join(normalizer.encode(c) for c in chunks) + normalizer.finish()
    assert out == model_normalize(b"".join(chunks))


# ---------------------------------------------------------------- BodyInspector


def inspect(chunks: list[bytes]) -> BodyKind:
    inspector = BodyInspector()
    for chunk in chunks:
        inspector.feed(chunk)
    return inspector.kind


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"", BodyKind.SEVEN_BIT),
        (b"plain\r\ntext\r\n", BodyKind.SEVEN_BIT),
        (b"caf\xc3\xa9\r\n", BodyKind.EIGHT_BIT),
        (b"a\0b", BodyKind.BINARY),
        (b"x" * 998 + b"\r\n", BodyKind.SEVEN_BIT),
        (b"x" * 999, BodyKind.BINARY),
        (b"\xff" * 999 + b"\n", BodyKind.BINARY),
        # Bare CRs end lines (they become CRLF): 1500 octets, no line over 998.
        (b"x" * 700 + b"\r" + b"y" * 700 + b"\n", BodyKind.SEVEN_BIT),
        (b"x" * 700 + b"\r" + b"y" * 999 + b"\rz\n", BodyKind.BINARY),
    ],
)
def test_body_kind_examples(body: bytes, kind: BodyKind) -> None:
    assert inspect([body]) is kind


def test_line_length_counts_across_chunks() -> None:
    assert inspect([b"x" * 500, b"x" * 498, b"\r\n"]) is BodyKind.SEVEN_BIT
    assert inspect([b"x" * 500, b"x" * 499, b"\r\n"]) is BodyKind.BINARY
    assert inspect([b"a\r\n" + b"x" * 600, b"x" * 399 + b"\r\n"]) is BodyKind.BINARY
    assert inspect([b"x" * 600 + b"\r", b"\n" + b"x" * 600]) is BodyKind.SEVEN_BIT
    assert inspect([b"x" * 333] * 3) is BodyKind.BINARY
    assert inspect([b"x" * 333, b"x" * 333, b"x" * 332]) is BodyKind.SEVEN_BIT
    # Only the part after the last CR carries over to the next chunk.
    assert inspect([b"x" * 900 + b"\rab", b"x" * 996]) is BodyKind.SEVEN_BIT
    assert inspect([b"x" * 900 + b"\rab", b"x" * 997]) is BodyKind.BINARY


@pytest.mark.parametrize("carry", [0, 1, 500, 998])
def test_one_long_line_is_found_wherever_it_sits(carry: int) -> None:
    # Short lines around one line of 998 (allowed) or 999 (too long) octets, at every
    # offset modulo the inspector's scan step, after ``carry`` octets of an open line.
    for ending in (b"\r\n", b"\n", b"\r"):
        for offset in range(0, 999, 7):
            head = b"x" * (998 - carry) + ending + b"y" * (offset % 80) + ending
            head += b"z" * offset + ending
            for length, kind in ((998, BodyKind.SEVEN_BIT), (999, BodyKind.BINARY)):
                body = head + b"w" * length + ending + b"v" * 997
                assert inspect([b"u" * carry, body]) is kind, (ending, offset, length)


def test_binary_is_final() -> None:
    inspector = BodyInspector()
    inspector.feed(b"\0")
    inspector.feed(b"short ascii\r\n")
    assert inspector.kind is BodyKind.BINARY


@given(chunked())
def test_inspector_matches_model_under_any_chunking(chunks: list[bytes]) -> None:
    assert inspect(chunks) is model_kind(b"".join(chunks))

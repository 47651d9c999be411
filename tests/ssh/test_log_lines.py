"""Splitting a detached job's log into lines across chunk boundaries (UTF-8 and CR/LF split anywhere)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from services.ssh.detached import MAX_CHUNK, MAX_LINE_BYTES, _complete_utf8, split_lines


def test_partial_line_and_partial_character_are_held_back() -> None:
    text = "10% copying\nzählen"
    data = text.encode()
    lines, rest = split_lines(data[:-1])  # the last line is still being written
    assert lines == ["10% copying"]
    assert rest == "zähle".encode()
    lines, rest = split_lines("ä".encode()[:1])
    assert lines == [] and rest == "ä".encode()[:1]


def test_carriage_returns_are_line_breaks_but_crlf_is_one() -> None:
    lines, rest = split_lines(b"a\r\nb\rc\n")
    assert lines == ["a", "b", "c"] and rest == b""
    lines, rest = split_lines(b"progress 10%\r")
    assert lines == [] and rest == b"progress 10%\r"
    lines, rest = split_lines(rest + b"\nnext")
    assert lines == ["progress 10%"] and rest == b"next"


def test_complete_utf8_keeps_whole_sequences() -> None:
    for char in ["a", "é", "€", "𝄞"]:
        data = char.encode()
        assert _complete_utf8(data) == data
        for cut in range(1, len(data)):
            assert _complete_utf8(b"x" + data[:cut]) == b"x"


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200), st.lists(st.integers(0, 400)))
def test_any_chunking_yields_the_same_lines(text: str, cuts: list[int]) -> None:
    data = text.encode()
    whole, whole_rest = split_lines(data)
    pending, seen = b"", []
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(bounds):
        lines, pending = split_lines(pending + data[start:end])
        seen += lines
    assert seen == whole and pending == whole_rest


def test_a_log_that_never_breaks_its_lines_is_passed_on_in_bounded_pieces() -> None:
    pending, seen = b"", []
    for _ in range(10):  # 10 polls of 1 MiB each, no line break anywhere (and a character split at the edges)
        lines, pending = split_lines(pending + "é".encode() + b"x" * (MAX_CHUNK - 2))
        seen += lines
        assert len(pending) <= MAX_LINE_BYTES
    assert seen and all(len(line.encode()) <= MAX_LINE_BYTES for line in seen)
    assert sum(len(line.encode()) for line in seen) + len(pending) == 10 * MAX_CHUNK
    assert "\ufffd" not in "".join(seen)  # no character was cut in two

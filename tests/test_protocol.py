"""The channel codec: frames split and joined at any byte, and garbage rejected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors._protocol import MAX_FRAME, Beat, ChildFrame, FrameDecoder, Hello, Log, encode

FRAMES = [Hello(version=1, pid=7), Beat(seq=1), Log(level=20, body=b'{"event":"x"}' * 5000), Beat(seq=2)]
WIRE = b"".join(encode(f) for f in FRAMES)


class TestFrameDecoder:
    @given(st.lists(st.integers(min_value=1, max_value=len(WIRE)), max_size=30))
    def test_any_split_yields_the_same_frames(self, cuts: list[int]) -> None:
        """However the byte stream is cut into reads, the same frames come out in order."""
        decoder = FrameDecoder(ChildFrame)
        out, start = [], 0
        for cut in [*sorted(set(cuts)), len(WIRE)]:
            out += decoder.feed(WIRE[start:cut])
            start = cut
        assert out == FRAMES and decoder.pending == 0

    def test_oversized_length_is_rejected_at_once(self) -> None:
        """A length prefix above MAX_FRAME is an error before the body arrives."""
        decoder = FrameDecoder(ChildFrame)
        with pytest.raises(ValueError, match=rf"^frame of {MAX_FRAME + 1} bytes exceeds the {MAX_FRAME}-byte limit$"):
            decoder.feed((MAX_FRAME + 1).to_bytes(4, "big") + b"x")

    def test_undecodable_body_is_rejected(self) -> None:
        """A well-framed body that is not a known frame raises ValueError naming the problem."""
        with pytest.raises(ValueError, match=r"^(undecodable|invalid) frame: "):
            FrameDecoder(ChildFrame).feed(b"\x00\x00\x00\x03abc")

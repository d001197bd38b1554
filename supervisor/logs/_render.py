"""Render a chunk of a child's plain output lines as JSON-lines events.

Every line becomes ``head + seq + mid + seq + event + escape(line) + tail``:
the router builds the four constant parts once per chunk, so no line needs a
dict or an encoder call. :func:`render_lines` is the C extension
``_crender`` when it was built (``pip install`` compiles it) and
``ACTORSUP_NO_NATIVE`` is not set, else :func:`render_lines_py`; the two
give the same bytes and decline the same chunks, which the tests check on
random input.
"""

from __future__ import annotations

from ._native import allowed

__all__ = ["NATIVE", "TB_MARK", "render_lines", "render_lines_py"]

TB_MARK = b"Traceback (most recent call last):"  # how both traceback headers end
# Control characters other than tab need \\u escapes (and a trailing \\r is
# dropped): lines holding one take the per-line path.
_DECLINED = bytes(c for c in range(0x20) if c not in (0x09, 0x0A))


def render_lines_py(
    body: bytes | memoryview, first_seq: int, head: bytes, mid: bytes, event: bytes, tail: bytes, piece: int
) -> tuple[int, list[bytes]] | None:
    """``(lines, pieces)``: the rendered lines of ``body`` in pieces of about ``piece`` bytes.

    ``body`` is complete lines, each ending in ``b"\\n"``. The whole chunk is
    declined (None) if a line holds a control character other than tab, is
    not valid UTF-8, or ends in :data:`TB_MARK` (a traceback starts there):
    those need the per-line path.
    """
    body = bytes(body)
    if not body.endswith(b"\n"):
        raise ValueError("body must be complete lines, each ending in a newline")
    if piece < 1:
        raise ValueError(f"piece must be >= 1 (got {piece})")
    if len(body.translate(None, _DECLINED)) != len(body):
        return None
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            return None
    if TB_MARK in body and any(line.endswith(TB_MARK) for line in body.split(b"\n")):
        return None
    text = body[:-1]
    # JSON escapes first, then "%" doubled: the text becomes a %-template.
    if b"\\" in text:
        text = text.replace(b"\\", b"\\\\")
    if b'"' in text:
        text = text.replace(b'"', b'\\"')
    if b"\t" in text:
        text = text.replace(b"\t", b"\\t")
    if b"%" in text:
        text = text.replace(b"%", b"%%")
    start = head.replace(b"%", b"%%") + b"%d" + mid.replace(b"%", b"%%") + b"%d" + event.replace(b"%", b"%%")
    end = tail.replace(b"%", b"%%")
    sep = end + start
    lines = body.count(b"\n")
    step = max(1, piece * len(body) // (len(body) + lines * (len(sep) + 8)))  # input bytes per piece
    pieces: list[bytes] = []
    seq = first_seq
    pos = 0
    while True:
        stop = text.find(b"\n", pos + step)
        part = text[pos:] if stop < 0 else text[pos:stop]
        n = part.count(b"\n") + 1
        seqs: list[int] = [0] * (2 * n)
        seqs[0::2] = seqs[1::2] = range(seq, seq + n)
        seq += n
        pieces.append(b"".join((start, part.replace(b"\n", sep), end)) % tuple(seqs))
        if stop < 0:
            return lines, pieces
        pos = stop + 1


try:
    if not allowed():
        raise ImportError("ACTORSUP_NO_NATIVE is set")
    from ._crender import render_lines
except ImportError:  # not built (no compiler at install time), or turned off: same output, slower
    render_lines = render_lines_py
    NATIVE = False
else:
    NATIVE = True

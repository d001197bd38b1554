# Types of the C module _crender.c (see supervisor/logs/_render.py for the twin).
SCAN: str  # which scan was built: "sse2", "swar" or "bytes"

def render_lines(
    body: bytes | memoryview, first_seq: int, head: bytes, mid: bytes, event: bytes, tail: bytes, piece: int, /
) -> tuple[int, list[bytes]] | None: ...

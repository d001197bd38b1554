"""Rendering plain output lines: the C renderer and its Python twin give the same bytes."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.logs import _native, _render
from supervisor.logs._render import render_lines_py

try:
    from supervisor.logs._crender import render_lines as render_lines_c
except ImportError:  # not built here; CI builds it (see test_built_in_ci)
    render_lines_c = None

needs_c = pytest.mark.skipif(render_lines_c is None, reason="the C renderer was not built")

HEAD, MID = b'{"seq":', b',"id":"ab%c-'
EVENT = b'","host":"h%s","event":"'
TAIL = b'","stream":"stdout","pid":1}\n'
PARTS = (HEAD, MID, EVENT, TAIL)

# Plain text as a child prints it: quotes, backslashes, tabs, % signs, non-ASCII.
_TEXT = st.text(
    alphabet=st.sampled_from([*list('ab "\\\t%é€😀x'), "\u2028"]), max_size=60
)


def _events(pieces: list[bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in b"".join(pieces).splitlines()]


class TestRenderLines:
    def test_each_line_one_event(self) -> None:
        """Each line becomes head + seq + mid + seq + event + escaped text + tail, seq counting up."""
        rendered = render_lines_py(b'one "q"\ntwo\\\tx\n', 41, *PARTS, 1000)
        assert rendered is not None and rendered[0] == 2
        assert b"".join(rendered[1]) == (
            b'{"seq":41,"id":"ab%c-41","host":"h%s","event":"one \\"q\\"","stream":"stdout","pid":1}\n'
            b'{"seq":42,"id":"ab%c-42","host":"h%s","event":"two\\\\\\tx","stream":"stdout","pid":1}\n'
        )

    @pytest.mark.parametrize(
        "line",
        [
            b"cr\r", b"nul \x00", b"esc \x1b[0m", b"us \x1f",  # control characters
            b"bad \xff", b"cut \xc3", b"overlong \xc0\xaf", b"surrogate \xed\xa0\x80", b"big \xf4\x90\x80\x80",
            b"Traceback (most recent call last):",  # traceback headers
            b"  + Exception Group Traceback (most recent call last):",
        ],
    )
    def test_declines_chunk(self, line: bytes) -> None:
        """A control character, invalid UTF-8 or a traceback header anywhere declines the whole chunk (None)."""
        body = b"fine\n" + line + b"\nfine\n"
        assert render_lines_py(body, 1, *PARTS, 1000) is None
        if render_lines_c is not None:
            assert render_lines_c(body, 1, *PARTS, 1000) is None

    def test_accepts_valid_utf8_and_quoted_marks(self) -> None:
        """Every UTF-8 length passes, and so does the traceback header's text mid-line."""
        body = "é € 😀 \U0010ffff\nsaid Traceback (most recent call last): twice\n".encode()
        for render in filter(None, (render_lines_py, render_lines_c)):
            rendered = render(body, 1, *PARTS, 1000)
            assert rendered is not None
            assert [e["event"] for e in _events(rendered[1])] == body.decode().splitlines()

    def test_rejects_incomplete_lines(self) -> None:
        """A body that does not end in a newline is an error, with the rule in the message."""
        with pytest.raises(ValueError, match=r"^body must be complete lines, each ending in a newline$"):
            render_lines_py(b"a\nb", 1, *PARTS, 1000)
        if render_lines_c is not None:
            with pytest.raises(ValueError, match=r"^body must be complete lines, each ending in a newline$"):
                render_lines_c(b"a\nb", 1, *PARTS, 1000)

    def test_pieces_bounded(self) -> None:
        """Thousands of lines come back in pieces near the requested size, none split mid-line."""
        body = b"".join(b"line %d\n" % i for i in range(5000))
        for render in filter(None, (render_lines_py, render_lines_c)):
            rendered = render(body, 1, *PARTS, 4096)
            assert rendered is not None and rendered[0] == 5000
            pieces = rendered[1]
            assert len(pieces) > 10
            assert all(p.endswith(b"\n") and len(p) < 2 * 4096 for p in pieces)
            assert [e["seq"] for e in _events(pieces)] == list(range(1, 5001))

    @needs_c
    @settings(max_examples=300, deadline=None)
    @given(
        lines=st.lists(_TEXT, min_size=1, max_size=40),
        first=st.sampled_from([1, 9, 99, 999_995, 10**15 - 2]),
        piece=st.sampled_from([1, 64, 4096]),
    )
    def test_c_matches_python(self, lines: list[str], first: int, piece: int) -> None:
        """The C renderer gives the Python twin's bytes, and every line parses back to its text."""
        body = "".join(line + "\n" for line in lines).encode()
        c_rendered = render_lines_c(memoryview(body), first, *PARTS, piece)
        py_rendered = render_lines_py(body, first, *PARTS, piece)
        assert c_rendered is not None and py_rendered is not None
        assert c_rendered[0] == py_rendered[0] == len(lines)
        assert b"".join(c_rendered[1]) == b"".join(py_rendered[1])
        events = _events(c_rendered[1])
        assert [e["event"] for e in events] == lines
        assert [e["seq"] for e in events] == list(range(first, first + len(lines)))

    @needs_c
    @settings(max_examples=500, deadline=None)
    @given(lines=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=8))
    def test_c_declines_what_python_declines(self, lines: list[bytes]) -> None:
        """On arbitrary bytes both renderers make the same decision, and the same bytes when they accept."""
        body = b"".join(line + b"\n" for line in lines)
        c_rendered = render_lines_c(body, 1, *PARTS, 64)
        py_rendered = render_lines_py(body, 1, *PARTS, 64)
        assert (c_rendered is None) == (py_rendered is None)
        if c_rendered is not None and py_rendered is not None:
            assert b"".join(c_rendered[1]) == b"".join(py_rendered[1])

    @needs_c
    @pytest.mark.parametrize("long_part", [0, 1, 2, 3])
    def test_c_matches_python_with_long_constant_parts(self, long_part: int) -> None:
        """A long host or actor name (a constant part past any fixed buffer) renders the same bytes."""
        parts = list(PARTS)
        parts[long_part] = parts[long_part][:-1] + b"x" * 3000 + parts[long_part][-1:]
        body = b"".join(b"line %d with \"quotes\" and \\\n" % i for i in range(995, 1010))
        c_rendered = render_lines_c(body, 995, *parts, 4096)
        py_rendered = render_lines_py(body, 995, *parts, 4096)
        assert c_rendered is not None and py_rendered is not None
        assert c_rendered[0] == py_rendered[0] == 15
        assert b"".join(c_rendered[1]) == b"".join(py_rendered[1])

    @needs_c
    def test_c_argument_errors(self) -> None:
        """Wrong argument types and counts are TypeErrors that say what was expected."""
        with pytest.raises(TypeError, match=r"takes 7 arguments \(got 2\)"):
            render_lines_c(b"a\n", 1)
        with pytest.raises(TypeError, match=r"argument 3 must be bytes \(got str\)"):
            render_lines_c(b"a\n", 1, "head", MID, EVENT, TAIL, 10)
        with pytest.raises(ValueError, match=r"^piece must be >= 1 \(got 0\)$"):
            render_lines_c(b"a\n", 1, *PARTS, 0)

    @pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI guarantees a compiler")
    @pytest.mark.skipif(not _native.allowed(), reason="ACTORSUP_NO_NATIVE is set")
    def test_built_in_ci(self) -> None:
        """In CI the C renderer is built and chosen: the pure-Python path is only a fallback."""
        assert _render.NATIVE and _render.render_lines is render_lines_c


_PROBE = """
from supervisor.logs import _native, _render, _writer
print(_render.NATIVE, _render.render_lines is _render.render_lines_py,
      _writer.NATIVE, type(_writer.new_writer()).__name__, _native.loaded())
"""


@pytest.mark.parametrize("value", ["1", "yes"])
def test_no_native_switch_turns_both_off(value: str) -> None:
    """ACTORSUP_NO_NATIVE=1 (any value but "" or "0") makes both C modules give way to their Python twins."""
    env = {**os.environ, "ACTORSUP_NO_NATIVE": value}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "False", "PyThreadWriter", "False"]


@needs_c
@pytest.mark.parametrize("value", ["", "0"])
def test_native_is_used_unless_switched_off(value: str) -> None:
    """With the switch unset (or "0") the built C modules are used and loaded() says so."""
    env = {**os.environ, "ACTORSUP_NO_NATIVE": value}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "True", "Writer", "True"]


def _compile_renderer(directory: Path, macro: str) -> ModuleType:
    """_crender.c built with ``-Dmacro`` into ``directory`` and loaded from there."""
    source = Path(_render.__file__).with_name("_crender.c")
    target = directory / f"_crender{sysconfig.get_config_var('EXT_SUFFIX')}"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI has no C compiler")
        pytest.skip("no C compiler")
    include = sysconfig.get_paths()["include"]
    subprocess.run([cc, "-O2", "-shared", "-fPIC", f"-D{macro}", f"-I{include}", str(source), "-o", str(target)],
                   check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("_crender", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=[("CRENDER_SCAN_SWAR", "swar"), ("CRENDER_SCAN_BYTES", "bytes")],
                ids=lambda p: p[1])
def scan_variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    macro, name = request.param
    module = _compile_renderer(tmp_path_factory.mktemp(name), macro)
    assert name == module.SCAN  # the macro did pick that scan
    return module


class TestScanPaths:
    """The scans other platforms build (arm64 takes SWAR), forced on this one: same bytes as the twin."""

    # Each byte class the scan must stop at, or step over.
    SPECIALS: ClassVar[list[bytes]] = [
        b'"', b"\\", b"\t", b"\x01", b"\x1f", b"\x7f", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80",
        b"\xff", b"\xc3", b"\r", b" ", b"~",
    ]

    def test_special_at_every_offset(self, scan_variant: ModuleType) -> None:
        """A special byte at each offset of a word (0 to 40) is found exactly as the Python twin finds it."""
        for special in self.SPECIALS:
            for offset in range(41):
                for after in (0, 1, 7, 8, 15, 16, 17):
                    body = b"a" * offset + special + b"b" * after + b"\n" + b"c" * (offset % 9) + b"\n"
                    c_rendered = scan_variant.render_lines(body, 7, *PARTS, 64)
                    py_rendered = render_lines_py(body, 7, *PARTS, 64)
                    assert (c_rendered is None) == (py_rendered is None), (special, offset, after)
                    if c_rendered is not None and py_rendered is not None:
                        assert b"".join(c_rendered[1]) == b"".join(py_rendered[1]), (special, offset, after)

    def test_random_bodies(self, scan_variant: ModuleType) -> None:
        """Thousands of random bodies of mixed bytes: the same decision and the same bytes as the twin."""
        rng = random.Random(11)
        alphabet = [b"x", b"y", b" ", b"%", b'"', b"\\", b"\t", b"\n", b"\xc3\xa9", b"\xe2\x82\xac", b"\x00", b"\xff"]
        weights = [30, 30, 10, 2, 2, 2, 2, 6, 2, 2, 1, 1]
        accepted = 0
        for _ in range(3000):
            body = b"".join(rng.choices(alphabet, weights, k=rng.randrange(1, 120))) + b"\n"
            c_rendered = scan_variant.render_lines(body, 1, *PARTS, rng.choice([1, 64, 4096]))
            py_rendered = render_lines_py(body, 1, *PARTS, 4096)
            assert (c_rendered is None) == (py_rendered is None), body
            if c_rendered is not None and py_rendered is not None:
                accepted += 1
                assert b"".join(c_rendered[1]) == b"".join(py_rendered[1]), body
        assert 500 < accepted < 2900  # both outcomes were exercised

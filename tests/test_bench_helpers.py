"""The shared benchmark helpers: percentiles, figures, the peer-venv stamp."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from benchmarks._peers import PeerSetupError, peer_python, stop_tree
from benchmarks._stats import Figure, percentile, print_figures, summarize


class TestPercentile:
    def test_linear_interpolation(self) -> None:
        """p50 is the median and p95 interpolates between ranks, like numpy."""
        assert percentile([5, 1, 3, 2, 4], 50) == 3
        assert percentile([5, 1, 3, 2, 4], 95) == pytest.approx(4.8)

    def test_empty(self) -> None:
        """No samples is an error that says so."""
        with pytest.raises(ValueError, match=r"^percentile of no samples"):
            percentile([], 50)

    def test_summary(self) -> None:
        """summarize() reports count, extremes and the usual percentiles."""
        s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
        assert (s.n, s.min, s.p50, s.max) == (5, 1.0, 3.0, 100.0)


class TestFigures:
    def test_miss_is_marked(self) -> None:
        """A figure over its ceiling prints MISS, one under it prints ok."""
        out = io.StringIO()
        print_figures("t", [Figure("a", 250, "ms", target=200), Figure("b", 10, "ms", target=200)],
                      file=out, plain=True)
        lines = out.getvalue().splitlines()
        assert "MISS" in lines[3] and "ok" in lines[4]

    def test_unmeasured(self) -> None:
        """A figure without a value has no verdict."""
        assert Figure("a", None, target=1).met is None


class TestPeers:
    def test_bad_name(self, tmp_path) -> None:
        """A peer name must be a plain folder name."""
        with pytest.raises(ValueError, match="plain folder name"):
            peer_python("../x", [], root=tmp_path)

    def test_reuse(self, tmp_path) -> None:
        """A second call with the same requirements reuses the venv."""
        first = peer_python("empty", [], root=tmp_path)
        mtime = first.parent.parent.stat().st_mtime_ns
        assert peer_python("empty", [], root=tmp_path) == first
        assert first.parent.parent.stat().st_mtime_ns == mtime

    def test_pip_failure(self, tmp_path) -> None:
        """A pip failure raises PeerSetupError naming the peer and the step."""
        with pytest.raises(PeerSetupError, match=r"peer 'bad': pip install failed"):
            peer_python("bad", ["/nonexistent/file.whl"], root=tmp_path)

    def test_stop_tree(self) -> None:
        """stop_tree ends a process that ignores SIGTERM and reports it."""
        proc = subprocess.Popen([sys.executable, "-c",
                                 "import signal,time,sys; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                                 "print(1, flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()
        problems = stop_tree(proc, timeout=0.5)
        proc.stdout.close()
        assert proc.returncode is not None and "ignored signal" in problems[0]

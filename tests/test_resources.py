"""psutil sampling of processes, and the rss / cpu limits on explicit times."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import anyio
import psutil
import pytest

from supervisor.process._resources import LimitChecker, ResourceSample, ResourceSampler

MiB = 1024 * 1024


def _sample(t: float, cpu_time: float, *, rss: int = 10 * MiB, pid: int = 42, ctime: float = 1.0) -> ResourceSample:
    return ResourceSample(
        pid=pid, create_time=ctime, time=t, cpu_time=cpu_time, cpu_percent=None,
        rss=rss, uss=None, num_fds=3, num_threads=1, children=0,
    )


class TestLimitChecker:
    def test_rss_over_limit(self) -> None:
        """rss_limit is reported only when rss is strictly above max_rss."""
        checker = LimitChecker(max_rss=100 * MiB, max_cpu=None, cpu_window=10)
        assert checker.check(0.0, _sample(0.0, 0.0, rss=100 * MiB)) is None
        assert checker.check(1.0, _sample(1.0, 0.0, rss=100 * MiB + 1)) == "rss_limit"

    def test_no_limits_never_fire(self) -> None:
        """Without limits nothing is reported, however large the sample."""
        checker = LimitChecker(max_rss=None, max_cpu=None, cpu_window=10)
        assert checker.check(0.0, _sample(0.0, 0.0, rss=10**12)) is None
        assert checker.check(100.0, _sample(100.0, 100.0)) is None

    def test_cpu_waits_for_a_full_window(self) -> None:
        """A process at 100 % is reported only once cpu_window seconds of samples exist."""
        checker = LimitChecker(max_rss=None, max_cpu=80.0, cpu_window=10)
        for t in range(10):  # one CPU second per wall second
            assert checker.check(float(t), _sample(float(t), float(t))) is None
        assert checker.check(10.0, _sample(10.0, 10.0)) == "cpu_limit"

    def test_cpu_average_over_window(self) -> None:
        """The average is CPU seconds over the window, not the latest spike."""
        checker = LimitChecker(max_rss=None, max_cpu=50.0, cpu_window=4)
        for t in range(5):  # 20 % for four seconds
            assert checker.check(float(t), _sample(float(t), 0.2 * t)) is None
        # One busy second: (0.2 * 3 + 1.0) / 4 s = 40 %, still under the limit.
        assert checker.cpu_average(5.0, _sample(5.0, 1.8)) == pytest.approx(40.0)
        # Another: (0.2 * 2 + 2.0) / 4 s = 60 %.
        assert checker.check(6.0, _sample(6.0, 2.8)) == "cpu_limit"

    def test_new_process_restarts_window(self) -> None:
        """A new (pid, create_time) identity starts a new window instead of mixing histories."""
        checker = LimitChecker(max_rss=None, max_cpu=10.0, cpu_window=2)
        assert checker.check(0.0, _sample(0.0, 0.0)) is None
        assert checker.check(1.0, _sample(1.0, 1.0)) is None
        assert checker.check(2.0, _sample(2.0, 0.0, pid=43)) is None
        assert checker.check(3.0, _sample(3.0, 1.0, pid=43)) is None
        assert checker.check(4.0, _sample(4.0, 2.0, pid=43)) == "cpu_limit"

    def test_reset_forgets_history(self) -> None:
        """reset() makes the checker wait for a full window again."""
        checker = LimitChecker(max_rss=None, max_cpu=10.0, cpu_window=1)
        checker.check(0.0, _sample(0.0, 0.0))
        checker.reset()
        assert checker.check(1.0, _sample(1.0, 1.0)) is None
        assert checker.check(2.0, _sample(2.0, 2.0)) == "cpu_limit"

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"max_rss": 0}, r"^max_rss must be > 0 bytes \(got 0\)$"),
            ({"max_cpu": -1.0}, r"^max_cpu must be > 0 percent \(got -1.0\)$"),
            ({"cpu_window": 0}, r"^cpu_window must be > 0 seconds \(got 0\)$"),
        ],
    )
    def test_bad_values_rejected(self, kwargs: dict, message: str) -> None:
        """Bad limits are rejected when the checker is built, naming the value."""
        args = {"max_rss": None, "max_cpu": None, "cpu_window": 10.0, **kwargs}
        with pytest.raises(ValueError, match=message):
            LimitChecker(**args)


class TestResourceSampler:
    def test_samples_own_process(self) -> None:
        """A live process yields rss, fds, threads; CPU % needs a second sample."""
        me = psutil.Process()
        sampler = ResourceSampler()
        first = sampler.sample(me.pid, me.create_time(), now=100.0)
        assert first is not None
        assert first.cpu_percent is None
        assert first.rss > MiB and first.num_threads >= 1 and first.num_fds >= 3
        assert first.uss is None
        sum(i * i for i in range(200_000))  # burn a little CPU
        second = sampler.sample(me.pid, me.create_time(), now=100.5)
        assert second is not None and second.cpu_percent is not None
        expected = (second.cpu_time - first.cpu_time) / 0.5 * 100
        assert second.cpu_percent == pytest.approx(expected)

    def test_the_proc_reader_agrees_with_psutil(self) -> None:
        """The /proc fast path reports what psutil reports for the same process."""
        code = "import sys; print('up', flush=True); sys.stdin.read()"
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"up\n"  # idle from here: nothing moves
            ps = psutil.Process(proc.pid)
            sample = ResourceSampler().sample(proc.pid, ps.create_time(), now=0.0)
            assert sample is not None
            with ps.oneshot():
                assert (sample.rss, sample.num_threads, sample.num_fds) == (
                    ps.memory_info().rss, ps.num_threads(), ps.num_fds())
                assert sample.cpu_time == pytest.approx(sum(ps.cpu_times()[:2]))
        finally:
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(10)
            proc.stdout.close()  # type: ignore[union-attr]

    @pytest.mark.parametrize("uss", [False, True], ids=["proc", "psutil"])
    def test_no_descriptor_left_skips_the_sample_and_keeps_the_identity(self, uss: bool) -> None:
        """Every descriptor in use (EMFILE): a sample is skipped (None), not raised; an unreaped pid stays ours."""
        code = textwrap.dedent(f"""
            import os, resource, psutil
            from supervisor.process._child import still_ours
            from supervisor.process._resources import ResourceSampler
            me = psutil.Process()
            created = me.create_time()
            sampler = ResourceSampler(uss={uss})
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            held = []
            try:
                while True:
                    held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            print(sampler.sample(me.pid, created, now=0.0), still_ours(me.pid, created, None))
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert (out.returncode, out.stdout.splitlines()[-1:]) == (0, ["None True"]), out.stderr[-1000:]

    def test_uss_is_optional(self) -> None:
        """uss is only read when asked for."""
        me = psutil.Process()
        sample = ResourceSampler(uss=True).sample(me.pid, me.create_time(), now=0.0)
        assert sample is not None and sample.uss is not None and 0 < sample.uss <= sample.rss

    def test_reused_pid_is_not_sampled(self) -> None:
        """A pid whose create_time does not match is another process: no sample."""
        me = psutil.Process()
        assert ResourceSampler().sample(me.pid, me.create_time() - 5.0, now=0.0) is None

    def test_gone_process_is_none(self) -> None:
        """A process that has exited and been reaped yields None."""
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        ctime = psutil.Process(proc.pid).create_time()
        proc.wait()
        assert ResourceSampler().sample(proc.pid, ctime, now=0.0) is None

    def test_counts_children(self) -> None:
        """The children count sees a process started by the sampled one."""
        me = psutil.Process()
        proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        try:
            sample = ResourceSampler().sample(me.pid, me.create_time(), now=0.0)
            assert sample is not None and sample.children >= 1
        finally:
            proc.stdin.close()
            proc.wait(10)

    @pytest.mark.anyio
    async def test_rss_limit_from_real_allocating_child(self) -> None:
        """A child that allocates 64 MiB crosses max_rss=48MiB in real samples."""
        code = (
            "import sys\n"
            "sys.stdin.readline()\n"
            "blob = b'x' * (64 * 1024 * 1024)\n"  # written, so resident
            "print('allocated', flush=True)\n"
            "sys.stdin.read()\n"
        )
        sampler = ResourceSampler()
        checker = LimitChecker(max_rss=48 * MiB, max_cpu=None, cpu_window=10)
        with anyio.fail_after(20):
            async with await anyio.open_process([sys.executable, "-c", code]) as proc:
                ctime = psutil.Process(proc.pid).create_time()
                before = sampler.sample(proc.pid, ctime, now=0.0)
                assert before is not None and before.rss < 48 * MiB
                assert checker.check(0.0, before) is None
                await proc.stdin.send(b"go\n")
                line = b""
                while not line.endswith(b"\n"):
                    line += await proc.stdout.receive()
                assert line == b"allocated\n"
                after = sampler.sample(proc.pid, ctime, now=1.0)
                assert after is not None and after.rss > 64 * MiB
                assert checker.check(1.0, after) == "rss_limit"
                await proc.stdin.aclose()
                assert await proc.wait() == 0
        assert sampler.sample(proc.pid, ctime, now=2.0) is None

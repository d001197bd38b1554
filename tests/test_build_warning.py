"""C modules that could not be built: pip's user is told on the terminal, and check/run say it at start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.app._cli import main
from supervisor.logs import _native, _render, _writer

ROOT = Path(__file__).resolve().parent.parent
INSTALL_WARNING = "WARNING: actorsup: the C log modules (_crender, _cwriter) could not be built"


@pytest.fixture
def no_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if neither C module had been built."""
    monkeypatch.delenv("ACTORSUP_NO_NATIVE", raising=False)
    monkeypatch.setattr(_render, "NATIVE", False)
    monkeypatch.setattr(_writer, "NATIVE", False)


def config(tmp_path: Path) -> str:
    path = tmp_path / "actorsup.toml"
    path.write_text('[actors.a]\ntarget = "tests.sample_actors:Steady"\n')
    return str(path)


def test_check_warns_in_one_line_when_the_c_modules_are_missing(
    no_c: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`actorsup check` with the C modules missing: still ok, plus one warning line on stderr saying what to do."""
    assert main(["check", config(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "ok (1 actors" in out
    (line,) = err.splitlines()
    assert line.startswith("actorsup: warning: the C log modules (_crender, _cwriter) are not built")
    assert "install a C compiler" in line and "ACTORSUP_NO_NATIVE=1" in line


def test_no_warning_when_native_code_is_switched_off(
    no_c: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ACTORSUP_NO_NATIVE=1 is a choice: nothing to warn about."""
    monkeypatch.setenv("ACTORSUP_NO_NATIVE", "1")
    assert main(["check", config(tmp_path)]) == 0
    assert capsys.readouterr().err == ""


def test_no_warning_when_the_c_modules_are_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both C modules in use: check prints its ok line only."""
    monkeypatch.delenv("ACTORSUP_NO_NATIVE", raising=False)
    monkeypatch.setattr(_render, "NATIVE", True)
    monkeypatch.setattr(_writer, "NATIVE", True)
    assert _native.missing_warning() is None
    assert main(["check", config(tmp_path)]) == 0
    assert capsys.readouterr().err == ""


def _source_copy(tmp_path: Path) -> Path:
    """What a wheel build needs, without built modules or caches."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    skip = shutil.ignore_patterns("*.so", "__pycache__", "*.pyc")
    for package in ("supervisor", "actors"):
        shutil.copytree(ROOT / package, src / package, ignore=skip)
    return src


@pytest.mark.slow
def test_pip_install_without_a_compiler_warns_on_the_terminal(tmp_path: Path) -> None:
    """`CC=false pip install`: pip hides the build's output, but the warning reaches the terminal pip runs in."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    got = subprocess.run([*pip, "install", "-q", "setuptools>=77"], capture_output=True, text=True, timeout=120)
    if got.returncode != 0:
        pytest.skip(f"setuptools>=77 could not be installed into a scratch venv: {got.stderr.strip()[-200:]}")
    install = [*pip, "install", "--no-deps", "--no-build-isolation", str(_source_copy(tmp_path))]
    env = {**os.environ, "CC": "false"}
    # In a terminal (pty.spawn makes one the controlling terminal): the warning shows at default verbosity.
    on_tty = subprocess.run([sys.executable, "-c", "import pty, sys; pty.spawn(sys.argv[1:])", *install],
                            env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    text = on_tty.stdout.decode(errors="replace")
    assert on_tty.returncode == 0, text[-2000:]
    assert INSTALL_WARNING in text and "Successfully installed actorsup" in text
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not list((site / "supervisor" / "logs").glob("*.so"))  # the pure-Python twins serve
    # Without a terminal pip shows the build's output only with -v (then the line is there too).
    quiet = subprocess.run([*install, "--force-reinstall"], env=env, capture_output=True, text=True,
                           timeout=120, start_new_session=True)
    assert quiet.returncode == 0 and INSTALL_WARNING not in quiet.stdout + quiet.stderr
    verbose = subprocess.run([*install, "--force-reinstall", "-v"], env=env, capture_output=True, text=True,
                             timeout=120, start_new_session=True)
    assert INSTALL_WARNING in verbose.stdout + verbose.stderr

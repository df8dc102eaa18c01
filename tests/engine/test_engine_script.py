"""dev/engine's answers when it cannot do its job: one clear error that says what to install,
and a stop that touches nothing it did not start."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def engine(*args, env_extra=None, tmp):
    env = {**os.environ, "CCCI_ENGINE_DIR": str(tmp / "engine"), **(env_extra or {})}
    return subprocess.run([str(REPO / "dev/engine"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_without_dockerd_it_says_what_to_install(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Only what the script itself needs, and no dockerd.
    for tool in ("bash", "env", "dirname", "cat", "mkdir", "timeout"):
        for d in ("/usr/bin", "/bin"):
            if Path(d, tool).exists():
                (bin_dir / tool).symlink_to(Path(d, tool))
                break
    p = engine("start", tmp=tmp_path, env_extra={"PATH": str(bin_dir)})
    assert p.returncode == 2, p
    assert "dockerd not found: install Debian's docker.io" in p.stderr, p.stderr
    assert p.stdout == ""


def test_stop_without_an_engine_of_ours_does_nothing(tmp_path):
    (tmp_path / "engine").mkdir()
    # A pidfile naming a live process that is not dockerd: never signalled.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "engine" / "docker.pid").write_text(str(sleeper.pid))
        p = engine("stop", tmp=tmp_path)
        assert p.returncode == 0, p
        assert "no engine of ours is running" in p.stderr
        assert sleeper.poll() is None, "stop signalled a process that is not its dockerd"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_unknown_command_is_refused_with_the_usage(tmp_path):
    p = engine("restart", tmp=tmp_path)
    assert p.returncode == 2 and "usage: dev/engine start|stop|status|env" in p.stderr

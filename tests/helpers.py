"""What several test modules share: composing the real configs, fast run overrides, running the CLIs."""

from __future__ import annotations

import atexit
import copy
import functools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from clamp.cli import CONFIG_PATH

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}


@functools.lru_cache(maxsize=256)
def _compose(config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    # Composing takes about 0.4 s here and many tests compose the same settings.
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=False)


def compose_train(overrides: list[str]) -> DictConfig:
    """The composed config of ``python -m clamp.train`` with ``overrides`` (a fresh copy each call)."""
    return copy.deepcopy(_compose("train", tuple(overrides)))


def compose_eval(overrides: list[str]) -> DictConfig:
    """The composed config of ``python -m clamp.eval`` (set ``paths.output_dir``: there is no Hydra run)."""
    return copy.deepcopy(_compose("eval", tuple(overrides)))


def fast_overrides(synthetic_root: Path, output_dir: Path, *extra: str) -> list[str]:
    """``+debug=tiny`` (a tiny CLAMP at 64 px, validated every epoch, CSV-logged) on the session's data."""
    return [
        "+debug=tiny",
        f"data.root={synthetic_root}",
        "data.generate=null",
        "trainer.max_epochs=1",
        f"paths.output_dir={output_dir}",
        *extra,
    ]


def run_cli(
    *args: str | Path,
    cwd: Path = REPO_ROOT,
    env: dict[str, str] | None = None,
    timeout: int = 180,
    bare_interpreter: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` offline and capture its output, as ``subprocess.run`` would.

    ``-m module`` and script runs are forked from this worker's fork server (tests/cli_forkserver.py:
    the same process behaviour without the 5-8 s of imports) when it can fork safely; ``-c`` code and
    ``bare_interpreter=True`` start a new interpreter, for checks of what an import loads or prints.
    """
    process = start_cli(*args, cwd=cwd, env=env, bare_interpreter=bare_interpreter)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess([sys.executable, *map(str, args)], process.returncode, stdout, stderr)


def start_cli(
    *args: str | Path, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None, bare_interpreter: bool = False
) -> subprocess.Popen | ForkedProcess:
    """Start ``python ARGS`` offline (see ``run_cli``); the result has Popen's poll, send_signal, kill,
    communicate and returncode, with text output."""
    full_env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    argv = [str(arg) for arg in args]
    if bare_interpreter or argv[0] == "-c" or not _can_fork():
        return subprocess.Popen(
            [sys.executable, *argv], cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return _fork_server().start(argv, cwd, full_env)


class ForkedProcess:
    """A command forked by the fork server, with the part of ``subprocess.Popen`` the tests use."""

    def __init__(self, server: _ForkServer, pid: int, folder: tempfile.TemporaryDirectory) -> None:
        self.server, self.pid, self.folder = server, pid, folder
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and (reply := self.server.reply(0)) is not None:
            self.returncode = reply["status"]
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        if self.returncode is None:
            reply = self.server.reply(timeout)
            if reply is None:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            self.returncode = reply["status"]
        streams = [Path(self.folder.name, name).read_text(errors="replace") for name in ("stdout", "stderr")]
        self.folder.cleanup()
        return streams[0], streams[1]


class _ForkServer:
    """The client side of tests/cli_forkserver.py: one server per test process, started on first use, one
    command at a time."""

    def __init__(self) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (the server's own errors, read if it stops)
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cli_forkserver.py"))],
            cwd=REPO_ROOT,
            env={**os.environ, **OFFLINE_ENV},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.pending = b""
        self.running: ForkedProcess | None = None
        atexit.register(self.close)
        # Single-threaded after its imports, i.e. safe to fork (one thread per worker under make test).
        self.usable = self.reply(None)["threads"] == 1

    def reply(self, timeout: float | None) -> dict | None:
        """The next JSON line from the server, or None when ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.pending:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.process.stdout], [], [], wait)[0]:
                return None
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                self.log.seek(0)
                log = self.log.read().decode(errors="replace")
                raise RuntimeError(f"the test fork server stopped (exit status {self.process.wait()}):\n{log}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def start(self, argv: list[str], cwd: Path, env: dict[str, str]) -> ForkedProcess:
        if self.running is not None and self.running.returncode is None:
            self.running.communicate()  # the server runs one command at a time
        folder = tempfile.TemporaryDirectory()
        streams = {name: str(Path(folder.name, name)) for name in ("stdout", "stderr")}
        request = {"argv": argv, "cwd": str(cwd), "env": env, **streams}
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        self.running = ForkedProcess(self, self.reply(None)["pid"], folder)
        return self.running

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


@functools.cache
def _fork_server() -> _ForkServer:
    return _ForkServer()


def _can_fork() -> bool:
    """Whether commands can come from the fork server. Without ``OMP_NUM_THREADS=1`` (set under ``make
    test``) its imports would start thread pools, so it is not started; with it, the server's own count of
    threads decides."""
    return os.environ.get("OMP_NUM_THREADS") == "1" and _fork_server().usable

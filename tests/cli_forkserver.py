"""A fork server for the tests' command-line runs (``tests.helpers.run_cli``).

Each ``python -m clamp.<command>`` spends 5-8 s of this machine's two cores importing torch, Lightning,
open_clip and albumentations before it reads its first argument, and the suite runs about forty of
them. This process pays for those imports once per test worker, then forks one child per command:
the child is a real separate process (its own pid, exit status, signals, working folder, environment
and Hydra state) that runs the module as ``python -m`` would, with its output in the files the request
names. What the imports print here is replayed at the start of every child's output, so a warning at
import time still reaches the tests' console checks.

Protocol, one JSON object per line: ``{"threads"}`` once the imports are done; then each request
``{"argv", "cwd", "env", "stdout", "stderr"}`` on stdin is answered by ``{"pid"}`` once the child runs
and ``{"status"}`` (``subprocess``'s returncode) when it ends. Commands that must start from a bare
interpreter (``-c`` code checking what an import loads) do not come here.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
import tempfile
import threading
from pathlib import Path

# What the entry points import on their way to the first step; the clamp modules first, as a real run does.
PRELOAD = (
    "clamp.train",
    "clamp.eval",
    "clamp.predict",
    "clamp.export",
    "clamp.tables",
    "clamp.data.splits",
    "lightning",
    "open_clip",
    "albumentations",
    "torchvision",
    "timm",
    "pycocotools.cocoeval",
    "hydra.utils",
)


def _preload() -> tuple[bytes, bytes]:
    """Import ``PRELOAD`` with the console quieted as the entry points do; what it printed, per stream."""
    import importlib

    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        for fd, file in zip((1, 2), (out, err)):
            os.dup2(file.fileno(), fd)
        try:
            from clamp.cli import quiet_console

            quiet_console()
            for name in PRELOAD:
                importlib.import_module(name)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
        out.seek(0)
        err.seek(0)
        return out.read(), err.read()


def _run_child(request: dict, preload_output: tuple[bytes, bytes]) -> None:
    """In the forked child: become ``python ARGV`` in the request's folder and environment; never returns."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, path, replay in zip((1, 2), (request["stdout"], request["stderr"]), preload_output):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(out, replay)
        os.dup2(out, fd)
        os.close(out)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    try:
        _run_main(request["argv"])
        status = 0
    except SystemExit as stop:
        status = _exit_status(stop.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = -signal.SIGINT if isinstance(sys.exc_info()[1], KeyboardInterrupt) else 1
    _exit(status)


def _run_main(argv: list[str]) -> None:
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path[0] = os.getcwd()
        sys.modules.pop(argv[1], None)  # run as __main__ only, as in a fresh interpreter
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path[0] = str(Path(argv[0]).resolve().parent)
        runpy.run_path(argv[0], run_name="__main__")


def _exit_status(code: object) -> int:
    """The exit status Python gives ``sys.exit(code)`` (a non-integer is printed and gives 1)."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def _exit(status: int) -> None:
    """Exit as the interpreter does (wait for non-daemon threads, run atexit, flush), without tearing down
    every imported module: that teardown takes 2-3 s with torch loaded and changes nothing on disk."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if status < 0:  # killed by a signal (an uncaught KeyboardInterrupt ends as SIGINT, as in Python)
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    os._exit(status)


def serve() -> None:
    """Say how many threads the imports started, then answer requests on stdin until it closes.

    Forking is only safe from a single-threaded process (a thread pool the imports started would be
    missing in the child); the client falls back to fresh interpreters otherwise.
    """
    preload_output = _preload()
    replies = sys.stdout
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1
    replies.write(json.dumps({"threads": threads}) + "\n")
    replies.flush()
    if threads != 1:
        return
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()  # every reply was flushed: the child inherits no buffered output
        if pid == 0:
            _run_child(request, preload_output)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        replies.write(json.dumps({"status": returncode}) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve()

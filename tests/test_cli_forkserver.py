"""The tests' fork server (tests/cli_forkserver.py) behaves as a fresh ``python`` for the commands it runs."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from tests.helpers import _can_fork, run_cli

SCRIPT = textwrap.dedent(
    """
    import os, sys
    print("argv", sys.argv[1:], "cwd", os.getcwd(), "path0", sys.path[0])
    print("env", os.environ.get("CLAMP_TEST_VALUE"), "main", __name__)
    print("to stderr", file=sys.stderr)
    if "--die" in sys.argv:
        os.kill(os.getpid(), 9)
    if "--raise" in sys.argv:
        raise ValueError("boom")
    if "--interrupt" in sys.argv:
        raise KeyboardInterrupt
    if "--message" in sys.argv:
        sys.exit("bye")
    sys.exit(int(sys.argv[1]))
    """
)


@pytest.fixture(scope="module")
def forking():
    if not _can_fork():
        pytest.skip("commands start fresh interpreters unless OMP_NUM_THREADS=1 (as under make test)")


def both(*args, **kwargs) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    return run_cli(*args, **kwargs), run_cli(*args, **kwargs, bare_interpreter=True)


@pytest.mark.parametrize(
    ("extra", "status", "last_line"),
    [
        ((), 3, "to stderr"),
        (("--die",), -9, "to stderr"),
        (("--raise",), 1, "ValueError: boom"),
        (("--interrupt",), -2, "KeyboardInterrupt"),
        (("--message",), 1, "bye"),
    ],
)
def test_a_forked_script_sees_the_arguments_folder_and_environment_of_a_fresh_interpreter(
    forking, tmp_path, extra, status, last_line
):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    forked, fresh = both(script, "3", *extra, cwd=tmp_path, env={"CLAMP_TEST_VALUE": "seen"})
    assert forked.returncode == fresh.returncode == status
    assert forked.stdout == fresh.stdout
    assert f"cwd {tmp_path}" in fresh.stdout and "env seen main __main__" in fresh.stdout
    # A traceback lists the server's frames too; its first and last lines are those of a fresh run.
    assert forked.stderr.splitlines()[:1] == fresh.stderr.splitlines()[:1] == ["to stderr"]
    assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1] == last_line


@pytest.mark.parametrize("table", ["3", "0"])
def test_a_forked_module_prints_and_exits_exactly_as_a_fresh_one(forking, table):
    # clamp.tables: a module the server has imported, and one whose fresh run takes a second, not ten.
    forked, fresh = both("-m", "clamp.tables", "--paper", table)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode == (0 if table == "3" else 2) and (fresh.stdout if table == "3" else fresh.stderr)


def test_a_command_past_its_timeout_is_killed_and_the_next_one_runs(forking, tmp_path):
    script = tmp_path / "sleeper.py"
    script.write_text("import sys, time\ntime.sleep(float(sys.argv[1]))\n")
    with pytest.raises(subprocess.TimeoutExpired):
        run_cli(script, "60", timeout=1)
    assert run_cli(script, "0").returncode == 0

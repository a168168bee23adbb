"""Real processes in tests: each in its own process group, its output in a log file.

The ``start_process`` fixture (tests/conftest.py) is a :class:`ProcessStarter` of
``tickwork <command>`` processes; it kills whatever is still running when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.support.waiting import output_tail, wait_for


class Process(subprocess.Popen[str]):
    """A process in its own process group (so it can be killed whole, with its children),
    its stdout and stderr in ``log``: read it when a test fails."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path):
        self.log = log
        with log.open("w") as out:  # the child has its own copy of the descriptor
            super().__init__(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def output(self) -> str:
        """Everything it has written so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_line(self, text: str, timeout_s: float = 30) -> None:
        """Wait until ``text`` is in its output; fails at once if it exits first."""
        wait_for(lambda: text in self.output(), timeout_s, f"{text!r} logged", processes=[self])

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60, *, group: bool = False) -> str:
        """Send ``sig`` (to the whole process group with ``group``, as a terminal's Ctrl-C
        does), wait for the exit, and return the output. A process that does not stop in
        time is killed, and the test fails saying so."""
        if group:
            os.killpg(self.pid, sig)
        else:
            self.send_signal(sig)
        try:
            self.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(
                f"{self.log.stem} did not stop on {signal.Signals(sig).name} within "
                f"{timeout_s} s:\n{output_tail(self)}"
            ) from None
        return self.output()

    def kill9(self) -> None:
        """SIGKILL the whole process group (out of memory, node lost), and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.wait(30)


class ProcessStarter:
    """``start(command, env, cwd=...)``: the program ``argv`` makes of ``command`` (split
    like a shell: ``"worker --processes 1"``), with ``env`` over the environment
    ``environment`` makes, logging to ``<folder>/<first word>-<n>.log`` (n counts that
    word's starts from 0), in ``folder`` unless ``cwd`` is given."""

    def __init__(
        self,
        folder: Path,
        argv: Callable[..., list[str]],
        environment: Callable[..., dict[str, str]],
    ) -> None:
        self.folder = folder
        self.argv = argv
        self.environment = environment
        self.started: list[Process] = []
        self._counts: dict[str, int] = {}

    def __call__(
        self, command: str, env: Mapping[str, str] | None = None, *, cwd: Path | None = None
    ) -> Process:
        args = shlex.split(command)
        n = self._counts[args[0]] = self._counts.get(args[0], -1) + 1
        proc = Process(
            self.argv(*args),
            cwd=cwd or self.folder,
            env=self.environment(**(env or {})),
            log=self.folder / f"{args[0]}-{n}.log",
        )
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        """Kill every process still running (the end of the test)."""
        for proc in self.started:
            if proc.poll() is None:
                proc.kill9()

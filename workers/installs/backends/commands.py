"""Running a step's shell command for real: its own process group, a timeout, output
captured as it comes (and scrubbed), the group killed on timeout or shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time

from tickwork.scrub import scrub
from workers.installs.backends.protocol import OutputSink, StepFailed

OUTPUT_LIMIT_CHARS = 64_000


def run_command(
    command: str,
    env: dict[str, str],
    timeout_s: float,
    secrets: tuple[str, ...],
    on_output: OutputSink | None = None,
) -> tuple[int, str]:
    """Run ``command`` with ``/bin/sh`` in its own process group; return (exit code, output).

    The wait is a short poll loop, not one blocking call, so the worker's shutdown
    notification (an exception raised in this thread) arrives within a quarter second;
    on that exception, or on timeout, the whole process group is killed. ``on_output``
    gets the output as it grows, in whole lines, scrubbed, about once a second.
    """
    with tempfile.TemporaryFile(mode="w+b") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        tail = _Tail(out.fileno(), secrets, on_output)
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    tail.poll()
                    if time.monotonic() >= deadline:
                        _kill_group(proc)
                        out.seek(0)
                        text = _clip(out.read().decode(errors="replace"))
                        raise StepFailed(
                            f"command timed out after {timeout_s:g} s",
                            scrub(text, secrets) or "",
                        ) from None
        except BaseException:
            _kill_group(proc)
            raise
        tail.poll(final=True)
        out.seek(0)
        return code, scrub(_clip(out.read().decode(errors="replace")), secrets) or ""


class _Tail:
    """Hands new output lines to a sink without moving the file offset the child writes at
    (``os.pread``: the child shares the open file, so a seek would misplace its writes)."""

    def __init__(self, fd: int, secrets: tuple[str, ...], sink: OutputSink | None) -> None:
        self.fd, self.secrets, self.sink = fd, secrets, sink
        self.offset = 0
        self.last = time.monotonic()

    def poll(self, final: bool = False) -> None:
        if self.sink is None or (not final and time.monotonic() - self.last < 1.0):
            return
        self.last = time.monotonic()
        data = os.pread(self.fd, 1 << 20, self.offset)
        if not final:
            data = data[: data.rfind(b"\n") + 1]  # whole lines only: secrets are never split
        if data:
            self.offset += len(data)
            self.sink(scrub(data.decode(errors="replace"), self.secrets) or "")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _clip(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT_CHARS:
        return text
    return "[... output clipped ...]\n" + text[-OUTPUT_LIMIT_CHARS:]

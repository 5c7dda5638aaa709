"""Recording the daemon with py-spy while a profile runs: ``py-spy record`` to an SVG flamegraph.

py-spy reads another process's memory (``ptrace``): it works as root, or as the daemon's user
where ``/proc/sys/kernel/yama/ptrace_scope`` is 0, and in a container only with ``SYS_PTRACE``.
:func:`check` tries a ``py-spy dump`` first, so that a missing permission is one clear line
before the load starts rather than a run without its flamegraph.

The recorder samples with ``--nonblocking`` (the daemon is not paused at each sample: the
latencies measured stay the daemon's, at the price of a rare torn stack) and stops on SIGINT,
which makes py-spy write the SVG.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

#: Samples per second (py-spy's default).
RATE = 100


class FlamegraphError(Exception):
    """py-spy cannot record that process; the message says why, in one line."""


def check(py_spy: str, pid: int) -> None:
    """:class:`FlamegraphError` unless py-spy can read process ``pid``."""
    try:
        done = subprocess.run([py_spy, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FlamegraphError(f"cannot run {py_spy}: {exc}") from None
    if done.returncode != 0:
        raise FlamegraphError(_explain(pid, done.stderr or done.stdout))


class Recorder:
    """``py-spy record`` of one process into an SVG, from :meth:`start` to :meth:`stop`."""

    def __init__(self, py_spy: str, pid: int, svg: Path, rate: int = RATE):
        self.command = [py_spy, "record", "--pid", str(pid), "--output", str(svg), "--format", "flamegraph",
                        "--rate", str(rate), "--nonblocking"]
        self.pid, self.svg = pid, svg
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, start_new_session=True)
        except OSError as exc:
            raise FlamegraphError(f"cannot start py-spy: {exc}") from None

    def stop(self, timeout: float = 60.0) -> Path:
        """Stop sampling and wait for the SVG; :class:`FlamegraphError` if none was written."""
        if self.proc is None:
            raise FlamegraphError("py-spy was not started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate()
            raise FlamegraphError(f"py-spy did not write {self.svg} within {timeout:g} s of being stopped") from None
        if not self.svg.is_file() or self.svg.stat().st_size == 0:
            raise FlamegraphError(f"no flamegraph written: {_explain(self.pid, stderr)}")
        return self.svg


def _explain(pid: int, output: str) -> str:
    text = " ".join(line.strip() for line in output.splitlines() if line.strip())
    lowered = text.lower()
    if "permission" in lowered or "operation not permitted" in lowered:
        return (f"py-spy may not read process {pid} (ptrace permission denied): run as root, or set "
                "/proc/sys/kernel/yama/ptrace_scope to 0, or give the container SYS_PTRACE")
    if "no such process" in lowered or "failed to find process" in lowered or "no python" in lowered:
        return f"py-spy finds no Python process {pid}: {text[:200]}"
    return f"py-spy cannot read process {pid}: {text[:300] or 'no output'}"

"""Stopping child processes: politely, then for sure."""

from __future__ import annotations

import subprocess


def stop_processes(*processes: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM every process still running, at once; SIGKILL any that has not exited `timeout` seconds later."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

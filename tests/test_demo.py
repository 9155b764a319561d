"""`python -m devtools.demo`: the sample flow COMPLETED on loopback, run at once and by the server's scheduler from
a cron schedule, then Ctrl-C leaves nothing running; a busy port or a missing dependency is one line, before
anything starts."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path

import pytest

from devtools import demo
from devtools.harness import ROOT, SCHEDULER_LOOP_SECONDS, descendants, describe_live, free_port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.long  # about 100 s (the schedule is due 30 to 90 s after deploying): CI's long set
def test_demo_completes_the_sample_run_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    server_port, s3_port = free_port(), free_port()
    output = tmp_path / "demo.log"
    with output.open("wb") as log:
        # Its own process group, as a terminal's foreground job: Ctrl-C is SIGINT to that group.
        demo_process = subprocess.Popen(
            [sys.executable, "-m", "devtools.demo", "--port", str(server_port), "--s3-port", str(s3_port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 330
        while "Everything stays up" not in output.read_text():
            assert demo_process.poll() is None, f"the demo exited early:\n{output.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"no COMPLETED runs in 330 s:\n{output.read_text()[-4000:]}"
            seen.update(descendants(demo_process.pid))
            time.sleep(0.5)
        text = output.read_text()
        assert ": COMPLETED; the webhook received [{'text': 'Hi from Prefect!'}]" in text, text
        assert f"Prefect UI: http://127.0.0.1:{server_port}" in text
        assert f"{demo.SAMPLE} schedule: cron 0 2 * * * (America/New_York), paused" in text  # prefect deploy took it
        added = re.search(
            rf"{demo.SAMPLE} schedule added for the demo: cron (\d+) (\d+) \* \* \* \(UTC\), active", text
        )
        assert added, text
        # The server's scheduler made the schedule a run, and the worker ran it when it was due.
        scheduled = re.search(r"scheduled run [\w-]+ \([\w-]+\): COMPLETED; the webhook received (.*)", text)
        assert scheduled and f"{{'text': \"{demo.SCHEDULED_TEXT}\"}}" in scheduled[1], text
        started = re.search(r"the scheduled run started (-?[\d.]+) s after it was due", text)
        assert started and -1 < float(started[1]) < 60, text
        assert (
            f"Explore it with the CLI: PREFECT_API_URL=http://127.0.0.1:{server_port}/api prefect flow-run ls" in text
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{server_port}/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()  # the UI is served, not only the API
        seen.update(descendants(demo_process.pid))
        assert len(seen) >= 3, f"expected server, moto and worker processes, saw {seen}"

        os.killpg(demo_process.pid, signal.SIGINT)
        assert demo_process.wait(timeout=60) == 130
    finally:
        if demo_process.poll() is None:  # the test failed before Ctrl-C: end the demo as a user would
            os.killpg(demo_process.pid, signal.SIGINT)
            demo_process.wait(timeout=60)
    assert "stopped." in output.read_text()
    left = [line for line in map(describe_live, seen) if line]
    assert not left, f"still running after Ctrl-C: {left}"
    assert not _listening(server_port) and not _listening(s3_port)


@pytest.mark.parametrize(
    ("now", "due"),
    [
        ("20:59:29.5", "21:00"),
        ("20:59:30", "21:00"),
        ("20:59:30.1", "21:01"),
        ("20:59:41", "21:01"),
        ("23:59:45", "00:01"),
    ],
)
def test_the_demo_schedule_is_due_at_the_first_whole_minute_at_least_the_lead_ahead(now: str, due: str) -> None:
    """Cron's resolution is a minute; the scheduler must see the schedule before it is due."""
    start = datetime.combine(date(2026, 12, 6), time_of_day.fromisoformat(now), UTC)
    found = demo.due_minute(start)
    assert found.strftime("%H:%M") == due and found.second == found.microsecond == 0
    assert found - start >= demo.SCHEDULE_LEAD > timedelta(seconds=SCHEDULER_LOOP_SECONDS)


def test_a_busy_port_is_one_line_before_anything_starts() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "devtools.demo", "--port", str(busy), "--s3-port", str(free_port())],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stdout == ""  # nothing was started
    assert result.stderr.splitlines() == [
        f"demo: port {busy} on 127.0.0.1 is busy (needed for the Prefect server): "
        "stop what holds it, or pass --port <free port>"
    ]


def test_a_missing_dependency_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "DEPENDENCIES", (*demo.DEPENDENCIES, "no_such_module_here"))
    monkeypatch.setattr(demo, "run", lambda *_, **__: pytest.fail("the demo started despite a missing dependency"))
    assert demo.main(["--port", str(free_port()), "--s3-port", str(free_port())]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "demo: missing no_such_module_here: run `pip install -r requirements-dev.txt` in this venv first"
    ]

"""The command line: a port in use ends the process with a clear message, not a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.support.ports import free_port, free_port_block


def test_busy_port_exits_with_a_clear_message(tmp_path):
    base = free_port_block(3)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "chargebrain", "serve", "--data-dir", str(tmp_path / "d"),
             "--port", str(free_port()), "--modbus-port", str(base), "--ocpp-port", "0",
             "--admin-password", "a-long-password"],
            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "cannot start" in output and "Traceback" not in output


def test_cycle_ms_out_of_range_is_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "chargebrain", "serve", "--cycle-ms", "10",
                             "--data-dir", str(tmp_path / "d")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--cycle-ms" in result.stderr


def test_busy_ocpp_port_exits_with_a_clear_message(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "chargebrain", "serve", "--data-dir", str(tmp_path / "d"),
             "--port", str(free_port()), "--modbus-port", "0", "--ocpp-port", str(busy),
             "--admin-password", "a-long-password"],
            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "cannot start" in output and "Traceback" not in output

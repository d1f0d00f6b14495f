"""Helpers shared by the benchmark scripts in bench/.

The machine description, free loopback ports, a `chargebrain serve` child process that is
always stopped again (`Server`, a context manager), stopping any child process, the bare JSON
handler baseline and an HTTP request-rate load generator. The scripts import this module as
`common` (they run as `python bench/<name>.py`, so bench/ is on sys.path).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def machine(*, cpu_model: bool = True, os_release: bool = False) -> str:
    """`<CPU>, <n> cores[, <OS> <release>], Python <version>`.

    `cpu_model`: the CPU is /proc/cpuinfo's model name (what lscpu shows), else
    platform.processor() or platform.machine(). `os_release` adds the OS and kernel release."""
    model = platform.processor() or platform.machine()
    if cpu_model:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    system = f"{platform.system()} {platform.release()}, " if os_release else ""
    return f"{model}, {os.cpu_count()} cores, {system}Python {platform.python_version()}"


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(count: int) -> int:
    """A base port N with N … N+count-1 free on loopback right now."""
    for _ in range(200):
        base = free_port()
        if base + count > 65535:
            continue
        socks = []
        try:
            for offset in range(count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free block of ports")


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (/proc/PID/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def child_env() -> dict[str, str]:
    """Environment for child processes: this repository's src/ first on PYTHONPATH, and no
    CHARGEBRAIN_ADMIN_PASSWORD (the benchmarks pass their own password)."""
    env = {k: v for k, v in os.environ.items() if k != "CHARGEBRAIN_ADMIN_PASSWORD"}
    env["PYTHONPATH"] = f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}"
    return env


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that `finally` blocks (stopping child servers) run
    when the benchmark itself is terminated, e.g. by an interrupted bench/run_all.py."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def stop(proc: subprocess.Popen[Any], timeout_s: float = 15.0) -> int | None:
    """SIGTERM `proc` (if it still runs) and wait; SIGKILL after `timeout_s`.
    Returns the exit status, None if it had to be killed."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def wait_http(url: str, timeout_s: float = 30.0, *, proc: subprocess.Popen[Any] | None = None,
              poll_s: float = 0.05) -> float:
    """Poll `url` until it answers; the seconds that took. Raises RuntimeError on timeout or,
    given `proc`, when that process exits first."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited (status {proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.perf_counter() - began
        except OSError:
            time.sleep(poll_s)
    raise RuntimeError(f"{url} did not answer")


class Server:
    """`chargebrain serve` as a child process on free loopback ports.

    Use as `with Server(...) as server: server.start()`: leaving the block stops the process,
    whatever happened; `start()` also stops it itself when it never answers.
    `modbus_port=None` picks a free block of three ports, 0 switches Modbus TCP off.
    With `log` the output goes to `server.log` next to `data_dir`, else nowhere."""

    def __init__(self, data_dir: Path, *, password: str, cycle_ms: int | None = None,
                 demo: bool = False, modbus_port: int | None = None, log: bool = True) -> None:
        self.data_dir = data_dir
        self.password = password
        self.port = free_port_block(1)
        self.modbus_base = free_port_block(3) if modbus_port is None else modbus_port
        self.args = [sys.executable, "-m", "chargebrain", "serve", "--data-dir", str(data_dir),
                     "--port", str(self.port), "--modbus-port", str(self.modbus_base)]
        if cycle_ms is not None:
            self.args += ["--cycle-ms", str(cycle_ms)]
        self.args += ["--admin-password", password]
        if demo:
            self.args.append("--demo")
        self.log_path: Path | None = data_dir.parent / "server.log" if log else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0, poll_s: float = 0.01) -> float:
        """Start and wait for the first get_dev_info answer; the seconds from Popen to it."""
        env = child_env()
        if self.log_path is None:
            began = time.perf_counter()
            self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        else:
            with open(self.log_path, "ab") as log:
                began = time.perf_counter()
                self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                             env=env, cwd=ROOT)
        try:
            wait_http(self.url + "/cnf?cmd=get_dev_info", timeout_s, proc=self.proc,
                      poll_s=poll_s)
        except BaseException as err:
            self.stop()
            if isinstance(err, RuntimeError) and self.log_path is not None:
                raise RuntimeError(f"{err}: {self.log_path.read_text()[-2000:]}") from err
            raise
        return time.perf_counter() - began

    def call(self, query: str, body: Any = None, timeout_s: float = 30.0) -> Any:
        """One admin request (`query` after `/cnf?`, a POST when `body` is given); the decoded
        JSON answer (raises on a non-2xx status)."""
        data = None if body is None else json.dumps(body).encode()
        auth = base64.b64encode(f"admin:{self.password}".encode()).decode()
        request = urllib.request.Request(f"{self.url}/cnf?{query}", data=data,
                                         headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read())

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM; the exit status (None if it had to be killed or never started)."""
        return None if self.proc is None else stop(self.proc, timeout_s)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_json(port: int, body_path: str) -> None:
    """The bare baseline (run in a child process): one aiohttp handler answering the JSON
    object in `body_path`, serialised per request, on /cnf."""
    from aiohttp import web

    body = json.loads(Path(body_path).read_text())

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_route("*", "/cnf", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def http_rate(url: str, seconds: float, clients: int,
                    check: Callable[[int, bytes], None] | None = None) -> float:
    """Requests/s of GET `url` from `clients` concurrent keep-alive connections, each sending
    its next request when the answer is in, for `seconds`. `check(status, body)` raises on a
    bad answer (default: status must be 200)."""
    import aiohttp

    count = 0

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            async with session.get(url) as resp:
                body = await resp.read()
                if check is not None:
                    check(resp.status, body)
                elif resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status} from {url}")
            count += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session, start + seconds) for _ in range(clients)))
        return count / (time.perf_counter() - start)


def devices_check(count: int) -> Callable[[int, bytes], None]:
    """A `http_rate` check for get_dev_info: status 200 and `count` devices in the answer."""
    def check(status: int, body: bytes) -> None:
        if status != 200 or len(json.loads(body)["devices"]) != count:
            raise RuntimeError(f"bad answer: {status}")

    return check


def get_dev_info_rounds(script: str, body: Any, work_dir: Path, cb_url: str, *, rounds: int,
                        seconds: float, clients: int, check: Callable[[int, bytes], None],
                        warm_up_s: float = 0.0, wait_s: float = 30.0) -> dict[str, list[float]]:
    """`get_dev_info` requests/s, bare baseline against chargebrain, `rounds` alternating rounds
    of `seconds` each (after `warm_up_s` of each when > 0).

    The baseline is `script --serve-bare PORT FILE` (which runs `serve_json`) answering `body`,
    a child process that is stopped again however this ends; chargebrain runs at `cb_url`."""
    body_path = work_dir / "body.json"
    body_path.write_text(json.dumps(body))
    port = free_port()
    bare = subprocess.Popen([sys.executable, script, "--serve-bare", str(port), str(body_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=child_env())
    try:
        bare_url = f"http://127.0.0.1:{port}/cnf?cmd=get_dev_info"
        cb_info = f"{cb_url}/cnf?cmd=get_dev_info"
        wait_http(bare_url, wait_s, proc=bare)
        if warm_up_s > 0:
            asyncio.run(http_rate(bare_url, warm_up_s, clients, check))
            asyncio.run(http_rate(cb_info, warm_up_s, clients, check))
        rates: dict[str, list[float]] = {"bare": [], "chargebrain": []}
        for _ in range(rounds):
            rates["bare"].append(asyncio.run(http_rate(bare_url, seconds, clients, check)))
            rates["chargebrain"].append(asyncio.run(http_rate(cb_info, seconds, clients, check)))
        return rates
    finally:
        stop(bare)

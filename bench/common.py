"""Helpers shared by the benchmark scripts in bench/.

The machine description, free loopback ports, a `chargebrain serve` child process that is
always stopped again (`Server`, a context manager), stopping any child process, the bare aiohttp
baseline answering pre-serialised bytes, and HTTP rates measured with `wrk` (a C load
generator: a Python client on the same cores saturates with the servers and pulls every ratio
toward 100 %). The scripts import this module as
`common` (they run as `python bench/<name>.py`, so bench/ is on sys.path).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
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
                     "--port", str(self.port), "--modbus-port", str(self.modbus_base),
                     "--ocpp-port", "0"]
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


def serve_bytes(port: int, body_dir: str) -> None:
    """The bare baseline (run in a child process): one aiohttp handler on /cnf answering, for
    `cmd=NAME`, the bytes of `body_dir/NAME.json` as they are (pre-serialised, read once)."""
    from aiohttp import web

    bodies = {p.stem: p.read_bytes() for p in Path(body_dir).glob("*.json")}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.query.get("cmd", "")],
                            content_type="application/json", charset="utf-8")

    app = web.Application()
    app.router.add_route("*", "/cnf", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def ensure_wrk() -> str:
    """The path of `wrk` (the C HTTP load generator, Debian package `wrk`); installed with
    apt-get when missing and this runs as root, else SystemExit saying how to install it."""
    path = shutil.which("wrk")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (apt-get install -y wrk) …", file=sys.stderr, flush=True)
        if subprocess.run(["apt-get", "install", "-y", "wrk"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "wrk"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        path = shutil.which("wrk")
    if path is None:
        raise SystemExit("bench: wrk not found; install it: sudo apt-get install wrk")
    return path


WRK_THREADS = 1  # one generator thread: on 2 cores one core generates, the other serves
WRK_CONNECTIONS = 32


def wrk_rate(url: str, seconds: float, *, connections: int = WRK_CONNECTIONS,
             threads: int = WRK_THREADS) -> dict[str, float]:
    """Run wrk against `url`: requests/s, and the count of non-2xx answers and socket errors
    (a benchmark refuses a run that has any)."""
    out = subprocess.run(
        [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         url], capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate: {out[-500:]}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    return {"rps": float(rate.group(1)), "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0}


def bare_server(script: str, bodies: dict[str, bytes], work_dir: Path) -> tuple[
        subprocess.Popen[bytes], str]:
    """Start `script --serve-bare PORT DIR` (which runs `serve_bytes`) answering `bodies`
    (cmd → answer bytes); the process and its base URL. The caller stops it."""
    body_dir = work_dir / "bare"
    body_dir.mkdir(exist_ok=True)
    for cmd, body in bodies.items():
        (body_dir / f"{cmd}.json").write_bytes(body)
    port = free_port()
    proc = subprocess.Popen([sys.executable, script, "--serve-bare", str(port), str(body_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=child_env())
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/cnf?cmd={next(iter(bodies))}", 20.0, proc=proc)
    return proc, base


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare_rounds(bare_url: str, cb_url: str, *, rounds: int, seconds: float,
                   warm_up_s: float = 1.0, bare_pid: int | None = None,
                   cb_pid: int | None = None) -> dict[str, Any]:
    """wrk against the bare baseline and chargebrain, `rounds` alternating rounds; the medians,
    the ratio, every round, and whether the generator had headroom (the bare rate at least
    1.5 × chargebrain's: else the ratio measures wrk, not the server).

    With both server pids, also requests per CPU-second of each server process: what a
    server costs per answer, which holds even where the generator saturates first (large
    answers on two cores); `cpu_ratio` compares those."""
    wrk_rate(bare_url, warm_up_s)
    wrk_rate(cb_url, warm_up_s)
    bare: list[float] = []
    cb: list[float] = []
    per_cpu: dict[str, list[float]] = {"bare": [], "chargebrain": []}
    for _ in range(rounds):
        for name, url, rates, pid in (("bare", bare_url, bare, bare_pid),
                                      ("chargebrain", cb_url, cb, cb_pid)):
            before = cpu_seconds(pid) if pid else 0.0
            r = wrk_rate(url, seconds)
            if r["non_2xx"] or r["socket_errors"]:
                raise RuntimeError(f"{url}: {r}")
            rates.append(r["rps"])
            if pid:
                used = cpu_seconds(pid) - before
                per_cpu[name].append(r["rps"] * max(1, round(seconds)) / max(used, 1e-6))
    bare_rps, cb_rps = statistics.median(bare), statistics.median(cb)
    row: dict[str, Any] = {
        "bare_rps": round(bare_rps), "chargebrain_rps": round(cb_rps),
        "ratio": round(cb_rps / bare_rps, 3),
        "generator_headroom": round(bare_rps / cb_rps, 2),
        "generator_ok": bare_rps >= 1.5 * cb_rps,
        "rounds": {"bare": [round(v) for v in bare], "chargebrain": [round(v) for v in cb]}}
    if per_cpu["bare"] and per_cpu["chargebrain"]:
        bare_cpu = statistics.median(per_cpu["bare"])
        cb_cpu = statistics.median(per_cpu["chargebrain"])
        row.update({"bare_per_cpu_s": round(bare_cpu), "chargebrain_per_cpu_s": round(cb_cpu),
                    "cpu_ratio": round(cb_cpu / bare_cpu, 3)})
    return row


def raw_get(url: str, timeout_s: float = 10.0) -> bytes:
    """The answer bytes of GET `url` (no credentials: what wrk gets)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return bytes(resp.read())

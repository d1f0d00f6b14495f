"""Command line: `chargebrain serve [options]`, `chargebrain simulate-day [options]`."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
from pathlib import Path

from chargebrain.app import ChargeBrain, Settings
from chargebrain.logs import limit_client_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chargebrain", description="EV charging manager")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the charging manager")
    serve.add_argument("--data-dir", type=Path, default=Path("data"),
                       help="folder for everything persistent (default: ./data)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=4712, help="HTTP port (default 4712)")
    serve.add_argument("--modbus-port", type=int, default=4701,
                       help="first Modbus TCP port: EVSE on N, meters on N+1, N+2; 0 = off")
    serve.add_argument("--admin-password", default=os.environ.get("CHARGEBRAIN_ADMIN_PASSWORD"),
                       help="set the admin password (or CHARGEBRAIN_ADMIN_PASSWORD)")
    serve.add_argument("--cycle-ms", type=int, default=3000,
                       help="control cycle period in ms (250…60000, default 3000)")
    serve.add_argument("--ocpp-port", type=int, default=None,
                       help="OCPP 1.6J server for wallboxes (ws://host:N/<ChargeBoxID>); 0 = off "
                            "(default: param ocpp_srv_port, 19520)")
    serve.add_argument("--ocpp-password", default=os.environ.get("CHARGEBRAIN_OCPP_PASSWORD"),
                       help="password the wallboxes send (HTTP Basic, user = ChargeBox ID)")
    serve.add_argument("--ocpp-tls-cert", type=Path, default=None,
                       help="PEM certificate: the OCPP server speaks TLS (wss://)")
    serve.add_argument("--ocpp-tls-key", type=Path, default=None,
                       help="PEM private key of --ocpp-tls-cert (default: in the same file)")
    serve.add_argument("--ocpp-tls-mode", type=int, choices=(0, 1), default=None,
                       help="TLS on the OCPP port: 0 off, 1 on (default: on with --ocpp-tls-cert, "
                            "else param ocpp_srv_tls_mode)")
    serve.add_argument("--demo", action="store_true",
                       help="add a simulated site (grid meter, PV, house, three wallboxes)")
    from chargebrain.sim.day_cli import add_parser as add_simulate_day
    add_simulate_day(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate-day":
        from chargebrain.sim.day_cli import run as simulate_day
        return simulate_day(args, build_parser())
    if not 250 <= args.cycle_ms <= 60000:
        build_parser().error("--cycle-ms must be between 250 and 60000")
    if not 0 <= args.modbus_port <= 65533:
        build_parser().error("--modbus-port must be between 0 and 65533")
    if args.ocpp_port is not None and not 0 <= args.ocpp_port <= 65535:
        build_parser().error("--ocpp-port must be between 0 and 65535")
    if args.ocpp_tls_key is not None and args.ocpp_tls_cert is None:
        build_parser().error("--ocpp-tls-key needs --ocpp-tls-cert")
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_client_errors()
    _fixed_mmap_threshold()
    # the ocpp library logs every frame at INFO: only its warnings belong on the console
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    settings = Settings(data_dir=args.data_dir, host=args.host, port=args.port,
                        modbus_port=args.modbus_port, admin_password=args.admin_password,
                        cycle_ms=args.cycle_ms, demo=args.demo, ocpp_port=args.ocpp_port,
                        ocpp_password=args.ocpp_password, ocpp_tls_cert=args.ocpp_tls_cert,
                        ocpp_tls_key=args.ocpp_tls_key, ocpp_tls_mode=args.ocpp_tls_mode)
    return asyncio.run(_serve(settings))


MMAP_THRESHOLD_B = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _fixed_mmap_threshold() -> None:
    """Keep glibc from holding on to large freed buffers.

    Every admin password check runs scrypt, which allocates a 16 MiB buffer. glibc raises its
    mmap threshold after the first such buffer is freed, so later ones come from the heap and
    stay resident after use: +16 MB of RSS per thread that ever hashed. A fixed threshold
    (1 MiB) keeps large buffers mmapped, so they go back to the system when freed. No-op
    where the C library has no `mallopt` (not glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_B)


async def _serve(settings: Settings) -> int:
    app = ChargeBrain(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log = logging.getLogger("chargebrain")
    try:
        await app.start()
    except OSError as err:  # a port in use or an address we cannot bind: say so, no traceback
        log.error("cannot start: %s", err)
        await app.stop()
        return 2
    await stop.wait()
    log.info("stopping")
    await app.stop()
    return 0

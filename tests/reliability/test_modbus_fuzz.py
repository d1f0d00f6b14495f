"""Hostile Modbus TCP clients against a real `chargebrain serve` process.

Malformed MBAP headers, wrong lengths, unknown function codes, partial frames left hanging,
slow-loris connections and random bytes. After (and while) each, a well-behaved client on
another connection must get exactly the right answer, and the process must be alive. Waits are
bounded (sockets time out after PROBE_TIMEOUT_S); nothing here measures speed.

CHARGEBRAIN_FUZZ_EXAMPLES raises the number of random examples for a long run.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.support import (
    FRESH_LIMIT,
    PROBE_TIMEOUT_S,
    fuzz_examples,
    mbap,
    open_fds,
    probe,
    pymodbus_probe,
    read_frame,
    read_request,
    read_response,
    recv_exactly,
    start_server,
)

UNITS = (0, 1, 2)  # port offsets: EVSE, S0 meter 1, S0 meter 2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server process takes every abuse of this module (each test checks it is still
    alive and serving); at the end its log must show no traceback through chargebrain."""
    proc = start_server(tmp_path_factory.mktemp("modbus-fuzz") / "data")
    try:
        yield proc
    finally:
        proc.stop()
    log = proc.log_path.read_text(errors="replace")
    # pymodbus logs what it could not decode; a traceback through our code would be a bug
    assert not re.search(r'File "[^"]*/chargebrain/', log), log[-3000:]


@pytest.fixture(autouse=True)
def still_serving(server):
    yield
    assert server.proc is not None and server.proc.poll() is None, "server died"
    pymodbus_probe(server.modbus_base)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send; the server may already have closed the connection (a fine reaction)."""
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _drain(sock: socket.socket, wait_s: float = 0.05) -> bytes:
    """Whatever the server answered so far (possibly nothing)."""
    sock.settimeout(wait_s)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(4096):
            data += chunk
    sock.settimeout(PROBE_TIMEOUT_S)
    return data


def _exception_answer(tid: int, function: int, code: int) -> bytes:
    return mbap(tid, bytes([function | 0x80, code]))


# -- malformed MBAP headers -------------------------------------------------------------------

READ_PDU = struct.pack(">BHH", 3, 8093, 1)
MALFORMED = {
    "protocol id 1": mbap(1, READ_PDU, pid=1),
    "protocol id 0xffff": mbap(1, READ_PDU, pid=0xFFFF),
    "length 0": mbap(1, b"", length=0),
    "length 1 (unit id only)": mbap(1, b"", length=1),
    "length 0xffff": mbap(1, READ_PDU, length=0xFFFF),
    "length shorter than the PDU": mbap(1, READ_PDU, length=3),
    "length longer than the PDU": mbap(1, READ_PDU, length=40),
    "header only, 3 bytes": mbap(1, READ_PDU)[:3],
    "header without PDU": mbap(1, READ_PDU)[:7],
    "count 0": mbap(1, struct.pack(">BHH", 3, 8093, 0)),
    "count 2000": mbap(1, struct.pack(">BHH", 3, 8093, 2000)),
    "write count/byte count mismatch": mbap(1, struct.pack(">BHHB", 16, 8093, 2, 9) + b"\0d"),
    "exception response sent as a request": mbap(1, bytes([0x83, 0x02])),
    "unit 255, function 3 of nothing": mbap(1, bytes([3]), unit=255),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_frame_leaves_other_clients_served(server, name):
    for offset in UNITS:
        port = server.modbus_base + offset
        with _connect(port) as bad:
            _send_quietly(bad, MALFORMED[name])
            probe(port) if offset == 0 else _probe_meter(port)
            _drain(bad)
        probe(server.modbus_base)


def _probe_meter(port: int) -> None:
    """Meter units: read vendor id (the same on every unit)."""
    with _connect(port) as sock:
        sock.sendall(read_request(9, 8000, 2))
        expected = read_response(9, [0xCF05, 0])
        assert recv_exactly(sock, len(expected)) == expected


# -- function codes ---------------------------------------------------------------------------

def _well_formed(answer: bytes, tid: int) -> bytes:
    """Check the MBAP header of an answer (echoed tid, protocol 0, consistent length, unit 1)
    and return its PDU."""
    assert len(answer) >= 9, answer.hex()
    a_tid, pid, length, unit = struct.unpack(">HHHB", answer[:7])
    assert (a_tid, pid, unit) == (tid, 0, 1), answer.hex()
    assert length == len(answer) - 6, answer.hex()
    return answer[7:]


# coil/discrete functions and codes nobody implements: exception 1. pymodbus 3.16 answers a
# code it cannot decode with function byte 0x80 instead of code|0x80; both say "illegal".
@pytest.mark.parametrize("function", [1, 2, 5, 9, 10, 13, 14, 0x29, 0x41, 0x64, 0x7F])
def test_unsupported_function_is_exception_1_and_the_connection_keeps_working(server, function):
    port = server.modbus_base
    with _connect(port) as sock:
        sock.sendall(mbap(5, bytes([function]) + b"\x1f\x9d\0\1"))
        pdu = _well_formed(read_frame(sock), 5)
        assert pdu[0] in (0x80, function | 0x80) and pdu[1:] == b"\x01", pdu.hex()
        sock.sendall(read_request(6))
        expected = read_response(6, [FRESH_LIMIT])
        assert recv_exactly(sock, len(expected)) == expected
    probe(port)


# diagnostics and identification that pymodbus answers itself (no register is touched)
@pytest.mark.parametrize("function", [7, 8, 11, 12, 17, 24, 43])
def test_builtin_diagnostic_functions_answer_and_change_nothing(server, function):
    port = server.modbus_base
    with _connect(port) as sock:
        sock.sendall(mbap(5, bytes([function]) + b"\x00\x04\x00\x00"))
        pdu = _well_formed(read_frame(sock), 5)
        assert pdu[0] & 0x7F == function, pdu.hex()
        sock.sendall(read_request(6))
        expected = read_response(6, [FRESH_LIMIT])
        assert recv_exactly(sock, len(expected)) == expected
    probe(port)
    _probe_meter(port + 1)


def test_valid_request_after_garbage_on_a_new_connection(server):
    port = server.modbus_base
    for name in sorted(MALFORMED):
        with _connect(port) as sock:
            _send_quietly(sock, MALFORMED[name])
        probe(port, tid=len(name))


# -- partial frames, silence, slow-loris ------------------------------------------------------

def test_partial_frames_left_hanging_do_not_block_others(server):
    port = server.modbus_base
    hanging = []
    try:
        for i in range(60):
            sock = _connect(port + (i % 3))
            frame = read_request(i)
            sock.sendall(frame[: 1 + i % (len(frame) - 1)])  # 1 … len-1 bytes, then silence
            hanging.append(sock)
        for tid in range(10):
            probe(port, tid)
        pymodbus_probe(port)
    finally:
        for sock in hanging:
            sock.close()


def test_slow_loris_connections_are_served_correctly_and_others_meanwhile(server):
    """100 connections each dribble one valid request, one byte per round; a normal client
    is served between rounds, and every slow client gets exactly its answer in the end."""
    port = server.modbus_base
    slow = [_connect(port) for _ in range(100)]
    try:
        frames = [read_request(1000 + i) for i in range(len(slow))]
        for position in range(len(frames[0])):
            for sock, frame in zip(slow, frames, strict=True):
                sock.sendall(frame[position:position + 1])
            probe(port, tid=position)
            time.sleep(0.01)  # let the server see each byte as its own segment
        for i, sock in enumerate(slow):
            expected = read_response(1000 + i, [FRESH_LIMIT])
            assert recv_exactly(sock, len(expected)) == expected
    finally:
        for sock in slow:
            sock.close()


def test_connection_per_request_does_not_leak(server):
    """Some drivers open a new TCP connection for every request (compat.md)."""
    pid = server.proc.pid
    port = server.modbus_base
    probe(port)
    before = open_fds(pid)
    for tid in range(300):
        probe(port, tid)
    for _ in range(100):  # connect and reset at once, mid-nothing
        sock = _connect(port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while open_fds(pid) > before + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds(pid) <= before + 5, (before, open_fds(pid))


# -- random bytes -----------------------------------------------------------------------------

frames = st.builds(
    lambda tid, pid, length, unit, pdu, fix: mbap(tid, pdu, unit=unit, pid=pid,
                                                  length=len(pdu) + 1 if fix else length),
    st.integers(0, 0xFFFF), st.sampled_from([0, 0, 0, 1, 0xFFFF]), st.integers(0, 0xFFFF),
    st.integers(0, 255), st.binary(min_size=0, max_size=260), st.booleans())
junk = st.one_of(st.binary(min_size=1, max_size=600), frames,
                 st.lists(frames, min_size=2, max_size=5).map(b"".join))


@settings(max_examples=fuzz_examples(2000), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=junk, offset=st.sampled_from(UNITS), close_first=st.booleans())
def test_random_bytes_never_disturb_other_clients(server, data, offset, close_first):
    port = server.modbus_base + offset
    sock = _connect(port)
    try:
        _send_quietly(sock, data)
        if close_first:
            sock.close()
        if offset == 0:
            probe(port)
        else:
            _probe_meter(port)
    finally:
        sock.close()

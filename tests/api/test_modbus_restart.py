"""Restarts of a real server process: flash registers survive, volatile ones come back from
their defaults, count_restart counts, acknowledged writes survive kill -9."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from pymodbus.client import ModbusTcpClient

from tests.support.server import ADMIN_AUTH, ServerProcess


def cnf(server: ServerProcess, query: str) -> tuple[int, object]:
    request = urllib.request.Request(f"{server.base_url}/cnf?{query}",
                                     headers={"Authorization": ADMIN_AUTH})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def read_all(server: ServerProcess, unit: str) -> dict:
    status, body = cnf(server, f"cmd=modbus&device={unit}&read=all")
    assert status == 200
    assert isinstance(body, dict)
    return body


def modbus_write(server: ServerProcess, offset: int, address: int, values: list[int]) -> None:
    client = ModbusTcpClient("127.0.0.1", port=server.modbus_base + offset, timeout=5, retries=0)
    assert client.connect()
    try:
        rr = client.write_registers(address, values, device_id=1)
        assert not rr.isError(), rr
    finally:
        client.close()


def test_flash_survives_volatile_comes_back_and_restarts_are_counted(tmp_path):
    server = ServerProcess(tmp_path / "data")
    server.start()
    try:
        assert read_all(server, "meter2")["8120d"] == 0
        assert cnf(server, "cmd=modbus&device=evse&write=8081&value=200&write=8080&value=100"
                           "&write=8082&value=0&write=8085&value=0&write=8083d&value=120"
                           "&write=8040&value=9") == (200, "ok")
        # volatile ones, through both doors
        assert cnf(server, "cmd=modbus&device=evse&write=8093&value=70&write=8091&value=80"
                           "&write=8087&value=1&write=8088&value=1&write=8086&value=600"
                   ) == (200, "ok")
        modbus_write(server, 0, 8094, [1])
        modbus_write(server, 1, 8042, [0, 500])  # meter1 pulsesperkwh (flash)
        modbus_write(server, 2, 8058, [0, 0, 0, 4321])  # meter2 energy (flash)
        evse = read_all(server, "evse")
        assert (evse["8093"], evse["8091"], evse["8087"], evse["8088"]) == (70, 80, 1, 1)
        assert evse["8086"] > 500
        assert server.stop() == 0

        server.start()
        evse = read_all(server, "evse")
        assert (evse["8081"], evse["8080"], evse["8082"], evse["8085"], evse["8083d"],
                evse["8040"]) == (200, 100, 0, 0, 120, 9)
        # volatile: back from def_* (8093 ← 8081, 8091 ← 8080, 8094 ← 8082) or their defaults
        assert (evse["8093"], evse["8091"], evse["8094"]) == (200, 100, 0)
        assert (evse["8086"], evse["8087"], evse["8088"]) == (0, 0, 0)
        assert read_all(server, "meter1")["8042d"] == 500
        assert read_all(server, "meter2")["8058q"] == 4321
        assert [read_all(server, u)["8120d"] for u in ("evse", "meter1", "meter2")] == [1, 1, 1]
        assert server.stop() == 0

        server.start()
        assert read_all(server, "meter2")["8120d"] == 2
    finally:
        server.stop()


def test_acknowledged_flash_write_survives_kill_9(tmp_path):
    server = ServerProcess(tmp_path / "data")
    server.start()
    try:
        assert cnf(server, "cmd=modbus&device=evse&write=8081&value=111") == (200, "ok")
        modbus_write(server, 2, 8040, [77])
        server.kill()
        server.start()
        assert read_all(server, "evse")["8081"] == 111
        assert read_all(server, "evse")["8093"] == 111
        assert read_all(server, "meter2")["8040"] == 77
        assert read_all(server, "meter2")["8120d"] == 1
    finally:
        server.stop()


def test_energy_counters_survive_a_clean_stop(tmp_path):
    server = ServerProcess(tmp_path / "data")
    server.start()
    try:
        status, car = cnf(server, "cmd=sim_vehicle&plugged=1&max_current=32000&soc=10")
        assert status == 200 and car["plugged"] is True
        assert cnf(server, "cmd=modbus&device=evse&write=8093&value=320") == (200, "ok")
        deadline = time.monotonic() + 30
        while read_all(server, "evse")["8058q"] < 3 and time.monotonic() < deadline:
            time.sleep(0.1)  # 22 kW: a Wh every 0.16 s of simulated (= real) time
        before = read_all(server, "evse")["8058q"]
        pulses = read_all(server, "meter1")["8050q"]
        assert before >= 3 and pulses >= 3
        assert server.stop() == 0
        server.start()
        assert read_all(server, "evse")["8058q"] >= before
        assert read_all(server, "meter1")["8050q"] >= pulses
        assert read_all(server, "evse")["8092"] == 0  # the virtual car is not saved
    finally:
        server.stop()

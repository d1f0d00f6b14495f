"""`mqtts://` against a real Mosquitto with a TLS listener, its certificate signed by a CA made
in the test (openssl): the CA comes from the param `mqtt_ca_file`; without it the broker is not
trusted and nothing connects. MQTT 3.1.1 and MQTT 5."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import orjson
import pytest

from tests.mqtt.conftest import wait_connected
from tests.support.mosquitto import Listener, Mosquitto
from tests.support.ports import free_port
from tests.support.server import running_app


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki() -> Iterator[Path]:
    """ca.pem, and server.pem/server.key for 127.0.0.1 signed by it (EC keys: fast). In a
    directory of its own under the system temp dir: pytest's is private to this user, and a
    mosquitto started as root reads its files as the user `mosquitto`."""
    work = Path(tempfile.mkdtemp(prefix="chargebrain-pki-"))
    try:
        yield _make_pki(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _make_pki(work: Path) -> Path:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=chargebrain test CA", cwd=work)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=work)
    (work / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
            cwd=work)
    for name in ("server.key", "server.pem", "ca.pem"):
        (work / name).chmod(0o644)  # mosquitto may read them as its own user
    work.chmod(0o755)
    return work


class TlsMosquitto(Mosquitto):
    """A plain listener (`port`, for waiting) and a TLS one (`tls_port`)."""

    def __init__(self, work_dir: Path, pki: Path) -> None:
        super().__init__(work_dir)
        self.tls_port = free_port()
        self.conf.write_text(
            f"per_listener_settings false\nallow_anonymous true\npersistence false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\ncafile {pki / 'ca.pem'}\n"
            f"certfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n")


@pytest.fixture
def tls_broker(tmp_path, pki):
    (tmp_path / "tls").mkdir()
    broker = TlsMosquitto(tmp_path / "tls", pki)
    broker.start()
    yield broker
    broker.stop()


def client_tls(pki: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki / "ca.pem"))


@pytest.mark.parametrize(("scheme", "protocol"), [
    ("mqtts", aiomqtt.ProtocolVersion.V311), ("mqtts5", aiomqtt.ProtocolVersion.V5)])
async def test_tls_with_the_ca_file(tmp_path, tls_broker, pki, scheme, protocol):
    async with running_app(tmp_path / "d", modbus=False, cycle_ms=250) as cb:
        m3 = "M3"
        assert await cb.client.post("set_device", {"devices": [
            {"dev_id": m3, "dev_type": "meter_ajax", "address": "mqtt", "mqtt_publish": True,
             "com_timeout_ms": 60000}]}) == (200, "ok")
        assert await cb.client.post("set_params", {
            "mqtt_ca_file": str(pki / "ca.pem"), "mqtt_api": True,
            "mqtt_url": f"{scheme}://127.0.0.1:{tls_broker.tls_port}"}) == (200, "ok")
        await wait_connected(cb.app, 1)
        async with Listener(tls_broker.tls_port, tls_context=client_tls(pki),
                            protocol=protocol) as there:
            params = await there.wait_for("cfos_mqtt/get/params")  # retained, over TLS
            assert params["mqtt_ca_file"].endswith("ca.pem")
            await there.publish(f"cfos_mqtt/set/{m3}", orjson.dumps({"power_w": 2024}))
            await there.wait_for(f"cfos_mqtt/get/{m3}", lambda d: d["power_w"] == 2024)
            await there.publish("cfos_mqtt/api/cmd=get_params", b"")
            assert (await there.wait_for("cfos_mqtt/api_res"))["mqtt_api"] is True
        async with Listener(tls_broker.port) as plain:  # the same broker, both listeners
            assert await plain.wait_for("cfos_mqtt/status") == b"online"


@pytest.mark.parametrize("scheme", ["mqtts", "mqtts5"])
async def test_tls_without_the_ca_does_not_connect(tmp_path, tls_broker, scheme, caplog):
    async with running_app(tmp_path / "d", modbus=False, cycle_ms=250) as cb:
        with caplog.at_level(logging.WARNING, logger="chargebrain.mqtt"):
            assert await cb.client.post("set_params", {
                "mqtt_url": f"{scheme}://127.0.0.1:{tls_broker.tls_port}"}) == (200, "ok")
            await asyncio.sleep(1.5)  # the first attempt and its log line
        assert cb.app.mqtt.connects == 0
        assert any("certificate" in r.getMessage().lower() for r in caplog.records), [
            r.getMessage() for r in caplog.records]


async def test_an_unreadable_ca_file_keeps_mqtt_off_with_one_line(tmp_path, tls_broker,
                                                                   caplog):
    async with running_app(tmp_path / "d", modbus=False, cycle_ms=250) as cb:
        with caplog.at_level(logging.WARNING, logger="chargebrain.mqtt"):
            assert await cb.client.post("set_params", {
                "mqtt_ca_file": str(tmp_path / "missing.pem"),
                "mqtt_url": f"mqtts://127.0.0.1:{tls_broker.tls_port}"}) == (200, "ok")
            await asyncio.sleep(1.5)
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("chargebrain.mqtt")
             and r.levelno >= logging.WARNING]
        assert len(lines) == 1 and "mqtt_ca_file" in lines[0], lines
        assert cb.app.mqtt.connects == 0

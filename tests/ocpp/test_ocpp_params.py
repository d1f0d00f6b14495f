"""The OCPP server's port and TLS from the params `ocpp_srv_port` / `ocpp_srv_tls_mode` when
the command line does not give them (the command line wins), with the `ocpp` library's own
ChargePoint connecting over real loopback WebSockets."""

from __future__ import annotations

import asyncio
import ssl
import subprocess

import pytest

from chargebrain.params import SPECS
from chargebrain.sim.ocpp_box import SimBox
from tests.control.helpers import add
from tests.ocpp.support import ocpp_site
from tests.support.ports import free_port


def test_the_params_and_their_defaults():
    assert SPECS["ocpp_srv_port"].default == 19520
    assert (SPECS["ocpp_srv_port"].min, SPECS["ocpp_srv_port"].max) == (0, 65535)
    assert SPECS["ocpp_srv_tls_mode"].default == 0
    assert (SPECS["ocpp_srv_tls_mode"].min, SPECS["ocpp_srv_tls_mode"].max) == (0, 1)


async def test_the_server_listens_on_ocpp_srv_port_without_a_command_line_port(tmp_path):
    port = free_port()
    async with ocpp_site(tmp_path / "data", ocpp_port=None,
                         params={"ocpp_srv_port": port}) as site:
        assert site.central.port == port
        await add(site, dev_id="E2", dev_type="evse_ocpp", address="BOX-1", id=1)
        box = await SimBox.connect(f"ws://127.0.0.1:{port}", "BOX-1")
        assert await box.boot() == "Accepted"
        await box.close()
        status, params = await site.client.get("get_params")
        assert status == 200
        assert params["ocpp_srv_port"] == port and params["ocpp_srv_tls_mode"] == 0


async def test_the_command_line_port_wins_and_param_0_is_off(tmp_path):
    cli_port = free_port()
    async with ocpp_site(tmp_path / "a", ocpp_port=cli_port,
                         params={"ocpp_srv_port": free_port()}) as site:
        assert site.central.port == cli_port
        box = await SimBox.connect(f"ws://127.0.0.1:{cli_port}", "BOX-1")
        assert await box.boot() == "Rejected"  # the server answers: not configured
        await box.close()
    async with ocpp_site(tmp_path / "b", ocpp_port=None, params={"ocpp_srv_port": 0}) as site:
        assert site.app.ocpp is None
    async with ocpp_site(tmp_path / "c", ocpp_port=0, params={"ocpp_srv_port": 19520}) as site:
        assert site.app.ocpp is None  # --ocpp-port 0 wins over the param


@pytest.fixture
def cert(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_tls_mode_1_speaks_wss_and_0_from_the_command_line_wins(tmp_path, cert):
    cert_file, key_file = cert
    trust = ssl.create_default_context(cafile=str(cert_file))
    async with ocpp_site(tmp_path / "a", tls_cert=cert_file, tls_key=key_file,
                         params={"ocpp_srv_tls_mode": 1}) as site:
        box = await SimBox.connect(f"wss://127.0.0.1:{site.central.port}", "BOX-1",
                                   ssl_context=trust)
        assert await box.boot() == "Rejected"
        await box.close()
        with pytest.raises(Exception):  # noqa: B017 - plain ws:// to a TLS port fails
            await asyncio.wait_for(SimBox.connect(site.url, "BOX-1"), 5)
    # --ocpp-tls-mode 0 wins over the param and the certificate: plain ws://
    async with ocpp_site(tmp_path / "b", tls_cert=cert_file, tls_key=key_file, tls_mode=0,
                         params={"ocpp_srv_tls_mode": 1}) as site:
        box = await SimBox.connect(site.url, "BOX-1")
        assert await box.boot() == "Rejected"
        await box.close()


async def test_tls_mode_1_without_a_certificate_keeps_the_server_off(tmp_path):
    async with ocpp_site(tmp_path / "data", params={"ocpp_srv_tls_mode": 1}) as site:
        assert site.app.ocpp is None  # never plain ws:// where wss:// was asked for

"""MQTT 5 request/response for `cfos_mqtt/api/<query>` against a real Mosquitto: the answer
goes to the request's response topic with its correlation data; without a response topic to
`api_res`; response topics of chargebrain's own are refused; long answers are refused there
too; a duplicate of a state-changing call is answered, not run again."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.mqtt.conftest import wait_connected
from tests.support.mosquitto import Listener
from tests.support.server import running_app


class V5Client(Listener):
    """An MQTT 5 client that keeps (topic, payload, correlation data) of the answers."""

    def __init__(self, port: int) -> None:
        super().__init__(port, ("answers/#", "cfos_mqtt/api_res"),
                         protocol=aiomqtt.ProtocolVersion.V5)
        self.got: list[tuple[str, Any, bytes | None]] = []

    def _record(self, message: aiomqtt.Message) -> None:
        corr = getattr(message.properties, "CorrelationData", None)
        payload = message.payload if isinstance(message.payload, bytes) else b""
        self.got.append((message.topic.value, orjson.loads(payload) if payload else None,
                         bytes(corr) if corr is not None else None))

    async def request(self, query: str, body: bytes = b"", *, response_topic: str | None,
                      correlation: bytes | None) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation is not None:
            props.CorrelationData = correlation
        await self.client.publish(f"cfos_mqtt/api/{query}", body, qos=1, properties=props)

    async def next(self, after: int, timeout_s: float = 10.0) -> tuple[str, Any, bytes | None]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.got) <= after:
            assert asyncio.get_running_loop().time() < deadline, "no answer"
            await asyncio.sleep(0.02)
        return self.got[after]


@pytest.fixture
async def cb5(tmp_path, broker):
    async with running_app(tmp_path / "data", modbus=False, cycle_ms=250) as running:
        assert await running.client.post("set_params", {
            "mqtt_url": f"mqtt5://127.0.0.1:{broker.port}", "mqtt_api": True}) == (200, "ok")
        await wait_connected(running.app, 1)
        yield running


async def test_answers_go_to_the_response_topic_with_the_correlation_data(cb5, broker):
    async with V5Client(broker.port) as v5:
        await v5.request("cmd=get_params", response_topic="answers/me", correlation=b"\x01q1")
        topic, answer, corr = await v5.next(0)
        assert (topic, corr) == ("answers/me", b"\x01q1") and answer["mqtt_api"] is True
        # without a response topic: api_res, still with the correlation data
        await v5.request("cmd=get_params", response_topic=None, correlation=b"q2")
        topic, answer, corr = await v5.next(1)
        assert (topic, corr) == ("cfos_mqtt/api_res", b"q2") and "mqtt_url" in answer
        # no properties at all: api_res, as over MQTT 3.1.1
        await v5.request("cmd=get_params", response_topic=None, correlation=None)
        assert (await v5.next(2))[0::2] == ("cfos_mqtt/api_res", None)
        await asyncio.sleep(0.3)
        assert len(v5.got) == 3


async def test_own_topics_are_refused_as_response_topics(cb5, broker):
    async with V5Client(broker.port) as v5:
        for n, target in enumerate(["cfos_mqtt/ctl", "cfos_mqtt/set/E1",
                                    "homeassistant/sensor/x/config", "answers/#"]):
            await v5.request("cmd=get_params", response_topic=target, correlation=b"c%d" % n)
            topic, answer, corr = await v5.next(n)
            assert topic == "cfos_mqtt/api_res" and corr == b"c%d" % n
            assert isinstance(answer, str) and "refused" in answer


async def test_long_answers_are_refused_on_the_response_topic(cb5, broker):
    for i in range(100):
        await cb5.client.post("set_device", {"devices": [
            {"dev_type": "meter_ajax", "name": f"Zähler mit langem Namen {i} " * 6,
             "desc": "eine lange Beschreibung " * 8}]})
    async with V5Client(broker.port) as v5:
        await v5.request("cmd=get_dev_info", response_topic="answers/big", correlation=b"big")
        topic, answer, corr = await v5.next(0)
        assert (topic, corr) == ("answers/big", b"big")
        assert isinstance(answer, str) and "too long" in answer


async def test_a_duplicate_state_changing_call_runs_once(cb5, broker):
    async with V5Client(broker.port) as v5:
        body = orjson.dumps({"id": "u7", "name": "Bea"})
        await v5.request("cmd=set_user&msg_id=m1", body, response_topic="answers/a",
                         correlation=b"1")
        assert (await v5.next(0))[1] == "ok"
        await v5.request("cmd=del_user&id=u7&msg_id=m2", response_topic="answers/a",
                         correlation=b"2")
        assert (await v5.next(1))[1] == "ok"
        # the broker delivers set_user again: not run again (u7 stays deleted)
        await v5.request("cmd=set_user&msg_id=m1", body, response_topic="answers/a",
                         correlation=b"3")
        topic, answer, corr = await v5.next(2)
        assert (topic, answer, corr) == ("answers/a", "ok", b"3")
    _, users = await cb5.client.get("get_users")
    assert isinstance(users, list) and all(u.get("id") != "u7" for u in users)

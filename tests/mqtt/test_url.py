"""`mqtt_url` parsing: schemes, defaults, credentials, refusals."""

from __future__ import annotations

import pytest

from chargebrain.mqtt.url import BrokerUrl, BrokerUrlError, parse_broker_url


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://broker", BrokerUrl("broker", 1883)),
    ("mqtt://u:p%40ss@10.0.0.2:1884", BrokerUrl("10.0.0.2", 1884, "u", "p@ss")),
    ("mqtts://broker", BrokerUrl("broker", 8883, tls=True)),
    ("mqtt5://broker:1", BrokerUrl("broker", 1, version=5)),
    ("mqtt3://user@broker", BrokerUrl("broker", 1883, "user")),
    ("MQTTS5://b/", BrokerUrl("b", 8883, tls=True, version=5)),
])
def test_accepted(url, expected):
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize("url", ["http://broker", "broker:1883", "mqtt://", "mqtt://b:99999",
                                 "mqtt://b/topic", "mqtt://b?x=1"])
def test_refused(url):
    with pytest.raises(BrokerUrlError):
        parse_broker_url(url)


def test_describe_hides_the_password():
    assert "geheim" not in parse_broker_url("mqtt://u:geheim@b").describe()

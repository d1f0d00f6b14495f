"""One aiomqtt client for a broker URL: protocol version, credentials and TLS.

TLS (`mqtts://`, `mqtts3://`, `mqtts5://`) verifies the broker's certificate and host name
against the CA file of the param `mqtt_ca_file` (PEM, one or more CA certificates) or, when
that is empty, the system's trust store. There is no "insecure" switch: a broker with a
self-signed certificate needs its CA in `mqtt_ca_file`.
"""

from __future__ import annotations

import ssl

import aiomqtt

from chargebrain.mqtt.url import BrokerUrl

KEEPALIVE_S = 30
TIMEOUT_S = 10.0


class TlsSetupError(ValueError):
    """The CA file cannot be used; the message says why."""


def tls_context(broker: BrokerUrl, ca_file: str) -> ssl.SSLContext | None:
    """The TLS context for `broker` (None without TLS)."""
    if not broker.tls:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file.strip() or None)
    except (OSError, ssl.SSLError) as err:
        raise TlsSetupError(f"mqtt_ca_file {ca_file!r} cannot be used: {err}") from None


def client_for(broker: BrokerUrl, ca_file: str, *, will: aiomqtt.Will | None = None
               ) -> aiomqtt.Client:
    version = (aiomqtt.ProtocolVersion.V5 if broker.version == 5
               else aiomqtt.ProtocolVersion.V311)
    return aiomqtt.Client(broker.host, broker.port, username=broker.username,
                          password=broker.password, protocol=version, will=will,
                          tls_context=tls_context(broker, ca_file), keepalive=KEEPALIVE_S,
                          timeout=TIMEOUT_S)

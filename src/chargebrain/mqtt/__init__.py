"""The MQTT API (spec §9) and Home Assistant discovery, on one broker connection.

- `url.py`: the `mqtt_url` param → where and how to connect (pure).
- `topics.py`: every topic name chargebrain publishes or subscribes (one home).
- `discovery.py`: Home Assistant discovery configs from a get_dev_info object (pure).
- `inbound.py`: what an incoming message means: a push (`set/<dev_id>`) or an API call
  (`api/<query>`), with the duplicate rule for commands that are not idempotent.
- `connection.py`: one aiomqtt client for a broker URL (version, credentials, TLS with
  `mqtt_ca_file`).
- `ctl.py`: `cfos_mqtt/ctl`, wallbox setpoints from an external controller in observation mode,
  and the fallback to `disable_policy` when it goes silent.
- `bridge.py`: `MqttBridge`, the connection (reconnect with back-off, reconnect on a param
  change) and the publisher fed by the state snapshot. The control cycle never waits on it.
"""

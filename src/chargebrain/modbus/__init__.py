"""Modbus (TCP, and RTU on a serial port) for chargebrain: one codec, one address parser, one
pooled asyncio client.

- `codec`: typed values ↔ 16-bit registers (integers, floats, UTF-8 strings, word orders, scale);
- `address`: `host:port` parsing (`Endpoint`), serial ports for RTU (`SerialEndpoint`);
- `batch`: merging register reads into few requests under the per-request cap;
- `client`: one shared connection per `host:port` or serial port, timeouts, reconnect with
  back-off.
See docs/modbus.md.
"""

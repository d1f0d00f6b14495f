"""The OCPP 1.6J central system: third-party wallboxes under chargebrain's load management.

- `state.py`: what chargebrain knows about one box and its connectors (pure data, the meter
  value and status rules);
- `handler.py`: the message handler of one connection (the `ocpp` library's `ChargePoint`,
  the CP→CS messages) and the CS→CP calls chargebrain makes (profiles, configuration);
- `server.py`: the WebSocket server, one `BoxLink` per ChargeBox ID that outlives its
  connections, and the profile keeper that renews the limits before they run out.

The device side (`devices/drivers/ocpp.py`) reads a connector's state from its `BoxLink` and
sends the plan's current with `BoxLink.set_limit`. Nothing here imports `devices/` or
`control/`: the app hands in the few callbacks the server needs (which boxes are configured,
who may charge, the fallback current).
"""

from chargebrain.ocpp.server import BoxLink, CentralSystem, OcppError

__all__ = ["BoxLink", "CentralSystem", "OcppError"]

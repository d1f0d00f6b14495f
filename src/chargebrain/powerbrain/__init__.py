"""The built-in Power Brain controller: register table, register banks, simulated hardware.

`registers` is the one register table; `bank` the per-unit register image with checked writes;
`hardware` the simulated wallbox and S0 inputs; `controller.PowerBrain` ties them together with
persistence and is what `cmd=modbus` and the Modbus TCP server (api/modbus_server.py) use.
"""

from chargebrain.powerbrain.bank import RegisterError, WriteOp
from chargebrain.powerbrain.controller import EvseStatus, MeterStatus, PowerBrain

__all__ = ["EvseStatus", "MeterStatus", "PowerBrain", "RegisterError", "WriteOp"]

"""The process: wires store, parameters, devices, the HTTP and Modbus servers and the cycle.

Everything runs in one asyncio event loop. `ChargeBrain.start()` opens every listening socket;
`stop()` leaves the wallboxes as `disable_policy` says and closes the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from chargebrain.api.auth import Authenticator
from chargebrain.api.http import CnfDispatcher, build_web_app
from chargebrain.api.modbus_server import PowerBrainModbusServer
from chargebrain.cmvars import CmVars
from chargebrain.control.cycle import ControlCycle
from chargebrain.control.hooks import UsersLink
from chargebrain.control.policy import policy_setpoint
from chargebrain.core.site import DisablePolicy
from chargebrain.devices.config import EvseConfig
from chargebrain.devices.definitions import install_catalog
from chargebrain.devices.device import Device
from chargebrain.devices.registry import DeviceRegistry
from chargebrain.mqtt.bridge import MqttBridge
from chargebrain.ocpp import CentralSystem
from chargebrain.ocpp.auth import TagAuthority
from chargebrain.params import Params
from chargebrain.powerbrain import PowerBrain
from chargebrain.recorder.recorder import UsageRecorder
from chargebrain.sim.demo import DemoSite
from chargebrain.state import StatePublisher, StateSource
from chargebrain.store.db import Store
from chargebrain.users.cycle import device_changed
from chargebrain.users.evses import RegistryEvses
from chargebrain.users.service import UserService
from chargebrain.users.transactions import TransactionLog
from chargebrain.web.dashboard import Dashboard
from chargebrain.web.sim import sim_routes

log = logging.getLogger("chargebrain")


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 4712
    modbus_port: int = 4701  # 0 disables the Modbus TCP server
    admin_password: str | None = None
    cycle_ms: int = 3000
    demo: bool = False
    ocpp_port: int | None = 0  # OCPP 1.6J server; 0 = off, None = param ocpp_srv_port
    ocpp_password: str | None = None  # HTTP Basic password of the boxes (None: none asked)
    ocpp_tls_cert: Path | None = None  # PEM certificate (chain): the OCPP server speaks wss://
    ocpp_tls_key: Path | None = None  # its PEM private key (None: inside the certificate file)
    # TLS on the OCPP port: 0 off, 1 on; None = on with a certificate, else ocpp_srv_tls_mode
    ocpp_tls_mode: int | None = None


class ChargeBrain:
    """One running installation."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store.open(settings.data_dir)
        # meter definitions: shipped ones and the user's files in <data dir>/meter_defs
        self.meter_definitions = install_catalog(settings.data_dir / "meter_defs")
        # the built-in Power Brain controller behind cmd=modbus and the Modbus TCP server
        self.powerbrain = PowerBrain(self.store)
        self.modbus_server: PowerBrainModbusServer | None = None
        self.params = Params(self.store)
        self.auth = Authenticator(self.store, self.params)
        # CM variables (set_cm_vars/get_cm_vars; CM.<name> in formulas): cmvars.py
        self.cm_vars = CmVars(self.store, params=self.params)
        # configured devices with their drivers and runtime status (devices/registry.py)
        self.ocpp: CentralSystem | None = None  # the OCPP server (chargebrain/ocpp), if on
        self.devices = DeviceRegistry(self.store,
                                      voltage_v=lambda: int(self.params["system_voltage"]),
                                      powerbrain=lambda: self.powerbrain,
                                      ocpp=lambda: self.ocpp)
        self.devices.load()
        # users, RFIDs, sessions, budgets (app.users) and the transaction log
        self.users = UserService(self.store, tz=None,
                                 evses=RegistryEvses(lambda: getattr(self, "devices", None)))
        self.transactions = TransactionLog(
            self.store, on_charging=lambda: bool(self.params["ta_on_charging"]),
            ledger=self.users.ledger, budget_for=self.users.budget_for,
            name_of=self.users.user_name)
        self.transactions.recover()
        self.ocpp_port, self.ocpp_tls = self._ocpp_choice()
        if self.ocpp_port != 0:
            self.ocpp = self._ocpp_central()
        self.devices.on_change.append(  # a deleted EVSE ends its session and transaction
            lambda dev_id: device_changed(self.users, self.transactions, dev_id,
                                         self.devices.clock()))
        # the one published snapshot of get_dev_info/get_params (state.py): app.state; marked
        # changed after every cycle, push, device change and state-changing API command
        self.state = StatePublisher(StateSource(self.devices, self.params, settings.cycle_ms))
        self.devices.on_change.append(self.state.mark_changed)
        self.devices.on_push.append(self.state.mark_changed)
        # the control cycle (control/cycle.py): read, plan, write every cycle_ms; app.cycle.
        # Its clock is the registry's (one clock for pushes, readings and plans).
        self.cycle = ControlCycle(self.devices, self.params,
                                  hook=UsersLink(self.users, self.transactions),
                                  period_ms=settings.cycle_ms,
                                  after_cycle=[self.state.mark_changed])
        # formulas read the CM variables; CM formula variables are evaluated with the live names
        self.cycle.formulas.attach(self.cm_vars)
        # the MQTT API and Home Assistant discovery (mqtt/): fed by app.state, never waited on
        self.mqtt = MqttBridge(self.params, self.state, self.devices, CnfDispatcher(self),
                               min_interval_s=self.cycle.period_s,
                               evse_max_ma=self._evaluated_max_ma)
        self.transactions.on_finished.append(self.mqtt.ta_finished)
        # usage graphs (recorder/): samples of the snapshot every rec_interval_s, written by a
        # thread of its own; the cycle never waits on it
        self.recorder = UsageRecorder(self.store.path,
                                      lambda: self.state.current().dev_info_value(),
                                      self.devices.clock,
                                      lambda: int(self.params["rec_interval_s"]))
        self.demo: DemoSite | None = None  # the --demo simulation (sim/demo.py)
        self.dashboard = Dashboard(self.state, self.auth, self.params)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.http_port: int | None = None

    async def start(self) -> None:
        generated = self.auth.ensure_password(self.settings.admin_password)
        if generated:
            # Printed once, on the console only; the store keeps just the hash.
            print(f"chargebrain: generated admin password: {generated}", flush=True)
        self.powerbrain.start(self.powerbrain.clock())
        if self.settings.modbus_port != 0:
            self.modbus_server = PowerBrainModbusServer(self.powerbrain, self.settings.host,
                                                        self.settings.modbus_port)
            await self.modbus_server.start()
        self._tasks.append(asyncio.create_task(self.powerbrain.run(), name="powerbrain-tick"))
        pages = [*self.dashboard.routes(), *self.dashboard.chart_routes(),
                 *sim_routes(self.auth)]
        self._runner = web.AppRunner(build_web_app(self, pages), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        self.http_port = _bound_port(site, self.settings.port)
        log.info("HTTP API listening on http://%s:%d/cnf", self.settings.host, self.http_port)
        if self.ocpp is not None:
            await self.ocpp.start()
        if self.settings.demo:
            self.demo = DemoSite(self)
            await self.demo.install()
        self.cycle.start()
        self.mqtt.start()
        self.recorder.start()

    async def stop(self) -> None:
        await self.mqtt.stop()  # `offline` on the availability topic
        await self.cycle.stop()  # leaves the wallboxes as disable_policy says
        await self.recorder.stop()  # stores what is queued
        if self.demo is not None:
            await self.demo.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            await self.dashboard.close()  # open event streams would hold the cleanup
            await self._runner.cleanup()
        if self.ocpp is not None:
            await self.ocpp.stop()
        await self.devices.close()
        with contextlib.suppress(Exception):
            # the last seconds of running transactions
            self.transactions.flush(self.devices.clock())
        if self.modbus_server is not None:
            await self.modbus_server.stop()
        self.powerbrain.close()
        self.store.close()


    def _evaluated_max_ma(self, dev_id: str) -> int | None:
        """A wallbox's maximum current as the last cycle evaluated it (formulas), or None."""
        record = self.cycle.last
        if record is None:
            return None
        return next((e.max_current_ma for e in record.site.evses if e.dev_id == dev_id), None)

    def _ocpp_choice(self) -> tuple[int, bool]:
        """The OCPP port and whether it speaks TLS: the command line, else the params
        `ocpp_srv_port` / `ocpp_srv_tls_mode`. TLS asked for without a certificate keeps the
        server off (never plain ws:// where wss:// was wanted)."""
        settings = self.settings
        port = (int(self.params["ocpp_srv_port"]) if settings.ocpp_port is None
                else settings.ocpp_port)
        if settings.ocpp_tls_mode is not None:
            tls = settings.ocpp_tls_mode == 1
        else:
            tls = settings.ocpp_tls_cert is not None or int(self.params["ocpp_srv_tls_mode"]) == 1
        if port != 0 and tls and settings.ocpp_tls_cert is None:
            log.error("OCPP server off: TLS is on (ocpp_srv_tls_mode 1) but no certificate "
                      "was given (--ocpp-tls-cert)")
            return 0, tls
        return port, tls

    def _ocpp_central(self) -> CentralSystem:
        """The OCPP server, told which boxes are configured (evse_ocpp devices: address =
        ChargeBox ID, id = connector), who may charge and the fallback current."""
        def devices_of(box_id: str, connector_id: int | None) -> list[Device]:
            return [d for d in self.devices.evses()
                    if d.config.dev_type == "evse_ocpp" and d.config.address == box_id
                    and d.enabled and connector_id in (None, d.config.id)]

        def fallback_ma(box_id: str, connector_id: int) -> int:
            found = devices_of(box_id, connector_id)
            if not found or not isinstance(found[0].config, EvseConfig):
                return 0
            target = policy_setpoint(found[0].config, int(self.params["disable_policy"]))
            return target.current_ma if target.charging_allowed else 0

        def released(box_id: str) -> list[int]:
            """Connectors of disabled devices under disable_policy −1: left to the box (its
            profiles are cleared, as the original does)."""
            if int(self.params["disable_policy"]) != DisablePolicy.UNLIMITED:
                return []
            return [d.config.id for d in self.devices.evses()
                    if d.config.dev_type == "evse_ocpp" and d.config.address == box_id
                    and not d.enabled]

        tags = TagAuthority(self.users, lambda box, conn: [d.dev_id for d in
                                                           devices_of(box, conn)],
                            lambda: self.devices.clock())
        cert = self.settings.ocpp_tls_cert if self.ocpp_tls else None
        return CentralSystem(self.settings.host, self.ocpp_port,
                             connectors_of=lambda box: [d.config.id
                                                        for d in devices_of(box, None)],
                             authorize=tags.authorize, fallback_ma=fallback_ma,
                             released=released,
                             password=self.settings.ocpp_password,
                             ssl_context=_tls_context(cert, self.settings.ocpp_tls_key),
                             unknown_boxes=self.devices.site.ocpp_unknown_boxes)


def _tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server TLS context from a PEM certificate and key; None without a certificate."""
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _bound_port(site: web.TCPSite, requested: int) -> int:
    server = site._server  # aiohttp keeps the asyncio server here
    if server is not None and server.sockets:
        return int(server.sockets[0].getsockname()[1])
    return requested

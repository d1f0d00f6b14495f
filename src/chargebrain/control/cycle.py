"""The control cycle: read every device, plan, write the setpoints, publish what happened.

`ControlCycle` (`app.cycle`) runs every `cycle_ms` (3000 by default, 250 at least) and at once
when pushed meter data shows a limit exceeded. One cycle:

1. **read** every device concurrently, each within its own timeout (`DeviceRegistry.read_all`:
   a dead device becomes a COM error and costs at most its timeout, never the others' time);
2. **build** the planner's input from the params and the readings (`control.inputs`), with each
   wallbox's authorisation from the users hook (`control.hooks`: the one marked place where
   users, sessions and overrides become `EvseInput` fields);
3. **plan** (`core.plan.plan`, pure) and keep its memory; a new overdraft maximum is persisted
   in the param `overdraft_cur`;
4. **write** the setpoints concurrently through the drivers, skipping writes that change
   nothing (same current and enable as last written, same driver, no COM error since, and the
   device does not report a different limit, e.g. after a restart); never in observation mode
   (`lb_enabled` false);
5. **publish**: every EVSE's runtime status (lreason, paused, pause_time …), the site numbers and
   `cycle_time` for get_dev_info, the virtual meters, and the record `cmd=explain` renders.

Extra cycles after a push (`set_ajax_meter`) skip step 1: the pushed data is already
the device's reading, polled devices keep the reading of the last periodic cycle, so the new
setpoints are written within milliseconds. Cycles never overlap (one lock); pushes arriving
during a cycle coalesce into one extra cycle after it.

`cycle_time` is the measured interval between the last two periodic cycle starts in ms (the
original reports e.g. 3009 for a 3 s cycle); the duration of the work itself is
`stats.last_duration_ms`.

Stopping (`stop()`, called by `app.stop()` on SIGINT/SIGTERM) leaves every controllable wallbox
as `disable_policy` says (0 off, 1 minimum current, −1 its maximum), unless in observation mode
or before the first cycle took control.

Time: `now_s` comes from `clock` (default: the registry's clock, so pushed data and readings
share it); tests pass their own clock and drive cycles with `run_once()`. The schedule itself
runs on the event loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chargebrain.control import overload
from chargebrain.control.explain import CycleRecord, explain, not_planned
from chargebrain.control.formula_env import CycleFormulas, FormulaNames
from chargebrain.control.hooks import EvseGate, FreeCharging, UsersHook, safe_gate
from chargebrain.control.inputs import (
    InputContext,
    SessionTracker,
    attached_meters,
    evse_input,
    group_input,
    meter_input,
    observation,
    site_settings,
)
from chargebrain.control.policy import policy_setpoint
from chargebrain.control.rules_stage import RulesStage, SiteView
from chargebrain.control.virtual import KINDS as VIRTUAL_KINDS
from chargebrain.control.virtual import SiteFlows, VirtualMeters
from chargebrain.core.budget import meter_currents_ma
from chargebrain.core.formula import FormulaError
from chargebrain.core.model import SITE_GROUP, Setpoint
from chargebrain.core.plan import plan
from chargebrain.core.release import released_ma
from chargebrain.core.site import (
    CommandSample,
    DrawSample,
    EvseInput,
    MeterRole,
    PlanMemory,
    PlanResult,
    SiteInput,
)
from chargebrain.devices import config as cfg
from chargebrain.devices.base import (
    EvseCapabilities,
    EvseDriver,
    EvseReading,
    EvseSetpoint,
    evse_capabilities,
)
from chargebrain.devices.drivers.ajax import AjaxEvse
from chargebrain.devices.drivers.expression import ExpressionMeters
from chargebrain.devices.registry import Device, DeviceRegistry
from chargebrain.devices.types import Kind
from chargebrain.params import Params
from chargebrain.units import ZERO, Phases, add, rotate_phases

log = logging.getLogger(__name__)

MIN_PERIOD_MS = 250
LOG_LENGTH = 4096
STOP_WAIT_S = 10.0  # how long stop() lets a running cycle finish

BeforeCycle = Callable[[float], Awaitable[None] | None]
AfterCycle = Callable[[], None]


@dataclass
class CycleStats:
    """Counters for tests, benchmarks and diagnostics (never persisted)."""

    writes: int = 0  # setpoints written through a driver
    skipped: int = 0  # writes skipped because nothing would change
    failed: int = 0  # writes that failed (COM error)
    fast_cycles: int = 0  # extra cycles after a push
    pushed_overloads: int = 0  # pushes judged to exceed a limit
    last_duration_ms: float = 0.0
    # event-loop times of periodic cycle starts, and of completed writes (dev_id, setpoint)
    period_starts: deque[float] = field(default_factory=lambda: deque(maxlen=LOG_LENGTH))
    write_log: deque[tuple[float, str, EvseSetpoint]] = field(
        default_factory=lambda: deque(maxlen=LOG_LENGTH))


@dataclass(frozen=True, slots=True)
class _Written:
    """The last setpoint written to one device, through which driver, and when."""

    driver: Any
    setpoint: EvseSetpoint
    com_errors: int
    at_s: float


IO_BUDGET_SHARE = 0.4  # of the period, for the reads and again for the writes
HISTORY_LENGTH = 4  # readings and setpoints kept per EVSE for the accounting (core.budget)


@dataclass
class _History:
    """The last few time-stamped measurements and setpoints of one EVSE."""

    readings: deque[DrawSample] = field(default_factory=lambda: deque(maxlen=HISTORY_LENGTH))
    commands: deque[CommandSample] = field(
        default_factory=lambda: deque(maxlen=HISTORY_LENGTH))


@dataclass(frozen=True, slots=True)
class _Planned:
    """What the last plan knew of one EVSE: a push that differs needs a new plan first."""

    driver: Any
    plugged: bool


class ControlCycle:
    """The periodic control loop of one installation (see the module docstring)."""

    def __init__(self, registry: DeviceRegistry, params: Params, *,
                 hook: UsersHook | None = None, period_ms: int = 3000,
                 clock: Callable[[], float] | None = None,
                 after_cycle: Sequence[AfterCycle] = ()) -> None:
        """`registry`: the devices to read and drive; `params`: the site parameters (read
        every cycle, `overdraft_cur` written); `hook`: the users domain (default
        `FreeCharging`); `clock`: unix seconds (default: the registry's clock, so pushed data
        and readings share it); `after_cycle`: called at the end of every cycle (the state
        snapshot)."""
        self.registry = registry
        self.params = params
        self.period_s = max(MIN_PERIOD_MS, int(period_ms)) / 1000
        # Reads and writes each get at most this long per cycle, whatever a device's own
        # timeout says, so that a dead device cannot stretch the period (reads + writes +
        # planning stay inside one period).
        self._io_budget_s = IO_BUDGET_SHARE * self.period_s
        self._clock = clock
        self.hook: UsersHook = hook or FreeCharging()
        self.before_cycle: list[BeforeCycle] = []  # e.g. the --demo simulation's step
        self.after_cycle: list[AfterCycle] = list(after_cycle)  # e.g. state.py's mark_changed
        self.memory = PlanMemory()
        self.last: CycleRecord | None = None
        self.sessions = SessionTracker()
        self.rules = RulesStage()  # charging rules: compiled programs and per-EVSE memory
        self.virtual = VirtualMeters()
        # formulas' names and evaluations (control/formula_env.py); the app adds CM variables
        self.formulas = FormulaNames(registry, params, clock=lambda: self.clock())
        self.expressions = ExpressionMeters()
        self.stats = CycleStats()
        self.started = 0  # cycles begun
        self.count = 0  # cycles completed
        self._written: dict[str, _Written] = {}
        self._gates: dict[str, EvseGate] = {}  # the users hook's answers of the last cycle
        self._observed: dict[str, tuple[bool, str, int | None]] = {}  # what the hook saw
        self._history: dict[str, _History] = {}
        self._planned: dict[str, _Planned] = {}  # EVSEs the last writing plan covered
        self._fast_task: asyncio.Task[CycleRecord] | None = None
        self.start_delay_s = self.period_s  # the first periodic cycle, after start()
        self._basis: overload.OverloadBasis | None = None
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._stopping = False
        self._controlled = False  # a cycle has written setpoints: we have taken control
        self.registry.on_push.append(self._on_push)

    # -- time -----------------------------------------------------------------------------------

    @property
    def clock(self) -> Callable[[], float]:
        """The clock `now_s` comes from (the registry's unless one was given)."""
        return self._clock or self.registry.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the periodic loop; its first cycle runs one period after the start (it reads
        every device and plans before anything is written, so a car that was charging is not
        cut to 0 A). A push from a wallbox that no plan covers runs a plan before that."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="control-cycle")

    async def stop(self) -> None:
        """Let a running cycle finish (up to `STOP_WAIT_S`), stop the loop, then leave the
        wallboxes as disable_policy says."""
        self._stopping = True
        with contextlib.suppress(ValueError):
            self.registry.on_push.remove(self._on_push)
        if self._task is not None:
            try:
                await asyncio.wait_for(self._lock.acquire(), STOP_WAIT_S)
                locked = True
            except TimeoutError:
                locked = False  # a cycle hangs on devices: cut it off
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            if locked:
                self._lock.release()
            self._task = None
        try:
            await self.release()
        except Exception:
            log.exception("leaving the wallboxes per disable_policy failed")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.start_delay_s
        while True:
            if not self._kick.is_set() and loop.time() < next_at:
                await self._sleep_until(loop, next_at)
            periodic = loop.time() >= next_at
            self._kick.clear()
            try:
                await self._run(fast=not periodic, periodic=periodic)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad cycle must not end load management
                log.exception("control cycle failed")
            if periodic:
                next_at += self.period_s
                now = loop.time()
                if next_at <= now:  # overran: start the next cycle at once, from a new grid
                    next_at = now

    async def _sleep_until(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """Sleep until `when` (loop time) or a `request()`, whichever comes first.

        One future woken by a timer or by `request()`: under API load every extra hop through
        the event loop waits behind the queued request handlers, so the wake-up takes one."""
        waiter = loop.create_future()
        timer = loop.call_at(when, _wake, waiter)
        self._waiter = waiter
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    # -- triggers and test hooks ----------------------------------------------------------------

    def request(self) -> None:
        """Ask for an extra (fast) cycle as soon as possible; bursts coalesce into one."""
        self._kick.set()
        if self._waiter is not None:
            _wake(self._waiter)

    async def run_once(self, now_s: float | None = None, *, fast: bool = False) -> CycleRecord:
        """Run one cycle now (after a running one finished); for tests and tools."""
        return await self._run(fast=fast, periodic=False, now_s=now_s)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """No cycle starts while this is held (a running one is finished first).

        For tests and tools that update several pushed devices as one consistent measurement;
        pushes made meanwhile still coalesce into one extra cycle afterwards."""
        async with self._lock:
            yield

    async def wait_next(self) -> int:
        """Wait until a cycle that starts after this call has completed; its number."""
        target = self.started + 1
        while self.count < target:
            self._done.clear()
            await self._done.wait()
        return self.count

    def _on_push(self, dev_id: str) -> None:
        """Registry push hook: a wallbox's push is recorded and shown to the users domain at
        once; an extra cycle runs at once when the push comes from a wallbox no plan covers
        yet (see `needs_plan`) or shows a limit exceeded."""
        if self._stopping:
            return
        device = self.registry.get(dev_id)
        if device is None:
            return
        now = self.clock()
        if device.kind is Kind.EVSE:
            self.observe(device, now)
            if self.needs_plan(device):
                self.request()
            return
        base = self._basis
        if base is None or device.kind is not Kind.METER:
            return
        meter = meter_input(device, self.period_s)
        if meter is None:
            return
        if overload.exceeded(base, meter, now):
            self.stats.pushed_overloads += 1
            self.request()

    @property
    def stopping(self) -> bool:
        """stop() was called: load management has given up control."""
        return self._stopping

    # -- wallboxes between cycles ---------------------------------------------------------------

    def observe(self, device: Device, now: float) -> None:
        """Take in a wallbox's latest reading now, not at the next cycle: its measurement goes
        into the accounting history, and a plug-in, unplug or card goes to the users domain
        (sessions, overrides, enter_rfid see it at once)."""
        status = device.status
        reading = status.evse_reading
        if reading is None or status.reading_s is None or not isinstance(device.config,
                                                                          cfg.EvseConfig):
            return
        self._record_reading(device)
        seen = (reading.plugged, reading.rfid, reading.rfid_seq)
        if self._observed.get(device.dev_id) != seen:
            self._observed[device.dev_id] = seen
            self._gates[device.dev_id] = safe_gate(self.hook,
                                                   observation(self.registry, device), now)
            self._show_gate(device, self._gates[device.dev_id])

    async def read_now(self, device: Device) -> None:
        """Read one wallbox now (e.g. after `sim_vehicle` changed its car) and take the
        reading in as a push would be; a plan follows at once when it needs one."""
        if self._stopping:
            return
        now = self.clock()
        attach = device.config.attach if isinstance(device.config, cfg.EvseConfig) else ""
        meter = self.registry.get(attach) if attach else None
        reads = [self.registry.read(device, now, self._io_budget_s)]
        if meter is not None:  # its energy counts for the session this reading may end
            reads.append(self.registry.read(meter, now, self._io_budget_s))
        await asyncio.gather(*reads)
        self.observe(device, now)
        if self.needs_plan(device):
            self.request()

    def needs_plan(self, device: Device) -> bool:
        """True when load management is on and the last plan did not cover this wallbox as
        it is now: a new device, its first push, a new driver after a configuration change,
        a car plugged in or unplugged since. Until a plan covers it, it gets 0 A."""
        if self._stopping or not bool(self.params["lb_enabled"]) or not device.enabled:
            return False
        planned = self._planned.get(device.dev_id)
        if planned is None or planned.driver is not device.driver:
            return True
        reading = device.status.evse_reading
        return planned.plugged != bool(reading is not None and reading.plugged)

    async def plan_for(self, device: Device, timeout_s: float) -> bool:
        """Run a plan that covers `device` now, waiting at most `timeout_s`; True when one
        did. Concurrent callers share one plan; a plan whose inputs were taken before this
        call does not count, so a second one follows it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for _ in range(3):
            if not self.needs_plan(device):
                return True
            task = self._fast_task
            if task is None or task.done():
                task = self._fast_task = asyncio.create_task(
                    self._run(fast=True, periodic=False), name="control-plan-now")
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(asyncio.shield(task), remaining)
            except TimeoutError:
                return False
            except Exception:  # logged by the task's own caller path; the answer is 0 A
                log.exception("plan for %s failed", device.dev_id)
                return False
        return not self.needs_plan(device)

    def answer(self, device: Device) -> EvseSetpoint:
        """What an HTTP-input wallbox is told now: its planned setpoint, held at what it was
        last told while other wallboxes still have cuts of the same plan to receive (see
        core.release: cuts before raises)."""
        driver = device.driver
        assert isinstance(driver, AjaxEvse)
        setpoint = driver.setpoint
        if setpoint is None or self.last is None:
            return setpoint or EvseSetpoint(0, enabled=False)
        planned: dict[str, int] = {}
        told: dict[str, int] = {}
        for other in self.registry.all():
            if not isinstance(other.driver, AjaxEvse):
                continue
            sp = other.driver.setpoint
            planned[other.dev_id] = sp.current_ma if sp is not None and sp.charging_allowed else 0
            told[other.dev_id] = self._told_ma(other)
        current = released_ma(device.dev_id, planned, told, self.last.result.diagnostics)
        if current == planned.get(device.dev_id, 0):
            return setpoint
        return EvseSetpoint(current, enabled=current > 0, one_phase=setpoint.one_phase)

    def _told_ma(self, device: Device) -> int:
        """What an HTTP-input wallbox was last told and may still draw (0 once a reading
        after it shows no car)."""
        history = self._history.get(device.dev_id)
        if history is None or not history.commands:
            return 0
        last = history.commands[-1]
        if history.readings and history.readings[-1].at_s > last.at_s and (
                not history.readings[-1].plugged):
            return 0
        return last.current_ma

    def delivered(self, device: Device, setpoint: EvseSetpoint) -> None:
        """An HTTP-input wallbox was handed `setpoint` in a set_ajax_evse answer just now."""
        self._record_command(device, setpoint, self.clock())

    def _record_command(self, device: Device, setpoint: EvseSetpoint, now: float) -> None:
        history = self._history.setdefault(device.dev_id, _History())
        current = setpoint.current_ma if setpoint.charging_allowed else 0
        last = history.commands[-1] if history.commands else None
        if last is None or last.current_ma != current:
            history.commands.append(CommandSample(now, current))

    def _record_reading(self, device: Device) -> None:
        status = device.status
        if status.reading_s is None or status.evse_reading is None:
            return
        history = self._history.setdefault(device.dev_id, _History())
        if history.readings and history.readings[-1].at_s >= status.reading_s:
            return
        measured = self.registry.evse_measurement(device)
        history.readings.append(DrawSample(status.reading_s, measured.currents_ma,
                                           status.evse_reading.plugged))

    def _show_gate(self, device: Device, gate: EvseGate) -> None:
        status = device.status
        status.needs_auth = gate.needs_auth
        status.overrides = gate.overrides
        status.ov_cur_ma = gate.ov_cur
        status.ta_en_wh = gate.ta_en

    def refresh_gate(self, dev_id: str) -> None:
        """Ask the users domain again now (after an override or a credential), show the
        answer in get_dev_info at once, and plan with it at once."""
        device = self.registry.get(dev_id)
        if device is None or not isinstance(device.config, cfg.EvseConfig):
            return
        obs = observation(self.registry, device)
        gate = safe_gate(self.hook, obs, self.clock())
        self._gates[dev_id] = gate
        self._show_gate(device, gate)
        self.request()

    # -- one cycle ------------------------------------------------------------------------------

    async def _run(self, *, fast: bool, periodic: bool, now_s: float | None = None
                   ) -> CycleRecord:
        async with self._lock:
            loop = asyncio.get_running_loop()
            began = loop.time()
            self.started += 1
            number = self.started
            if periodic:
                self._note_period_start(began)
            now = self.clock() if now_s is None else now_s
            try:
                if fast:
                    self.stats.fast_cycles += 1
                else:
                    await self._before(now)
                    await self.registry.read_all(now, self._io_budget_s)
                    for device in self.registry.evses():
                        self._record_reading(device)
                record = await self._plan_and_write(number, now, fast=fast)
            finally:
                self.count = number
                self.stats.last_duration_ms = (loop.time() - began) * 1000
                for hook in list(self.after_cycle):
                    try:
                        hook()
                    except Exception:
                        log.exception("after-cycle hook %r failed", hook)
                self._done.set()
            return record

    async def _before(self, now: float) -> None:
        """The `before_cycle` hooks; a failing one is logged, load management goes on."""
        for hook in list(self.before_cycle):
            try:
                result = hook(now)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("before-cycle hook %r failed", hook)

    def _note_period_start(self, began: float) -> None:
        starts = self.stats.period_starts
        if starts:
            self.registry.site.cycle_time_ms = round((began - starts[-1]) * 1000)
        starts.append(began)

    async def _plan_and_write(self, number: int, now: float, *, fast: bool = False
                              ) -> CycleRecord:
        site, ctx = self._inputs(now, fast=fast)
        self._kick.clear()  # pushes so far are in these inputs; later ones ask again
        result = plan(site, self.memory, now)
        self.memory = result.memory
        if result.write:
            await self._write(result.setpoints, now)
            self._controlled = True
            self._planned = {e.dev_id: _Planned(d.driver, e.connected) for e in site.evses
                             if (d := self.registry.get(e.dev_id)) is not None}
        else:
            self._written.clear()  # others may drive the boxes now: write all when back
            self._planned.clear()
        self._persist_overdraft(result)  # after the writes: an fsync must not delay them
        self._publish(site, ctx, result, now)
        record = CycleRecord(number, now, site, result, tuple(ctx.notes),
                             {g.group_id: g.name for g in site.groups})
        self.last = record
        self._basis = overload.basis(result.diagnostics, site.meters,
                                     site.settings.system_voltage_v, now)
        return record

    def _inputs(self, now: float, *, fast: bool = False) -> tuple[SiteInput, InputContext]:
        registry = self.registry
        formulas = self.formulas.begin(now)
        ctx = InputContext(formulas=formulas)
        self._expression_meters(formulas, now)
        settings = site_settings(self.params, ctx.notes, formulas)
        attached = attached_meters(registry)
        evses = registry.evses()
        present = {d.dev_id for d in evses}
        self.sessions.forget_missing(present)
        self.rules.forget(present)
        last = self.last
        view = SiteView.from_plan(last.site if last else None, last.result if last else None,
                                  now)
        for table in (self._history, self._observed, self._gates):
            for dev_id in [k for k in table if k not in present]:
                del table[dev_id]
        for device in registry.groups():
            ctx.groups.append(group_input(device, ctx.notes, formulas))
        for device in registry.meters():
            meter = meter_input(device, self.period_s, attached.get(device.dev_id))
            if meter is not None:
                ctx.meters.append(meter)
        for device in evses:
            if not isinstance(device.config, cfg.EvseConfig):
                continue
            # -- users hook: authorisation, overrides, budgets → EvseInput fields ----------
            # An extra cycle after a push only cuts current: it keeps the last gates (no
            # session bookkeeping, no database write before the setpoints go out).
            # A wallbox's push already asked the hook when something changed (`observe`).
            last_gate = self._gates.get(device.dev_id) if fast else None
            if last_gate is None:
                obs = observation(registry, device)
                last_gate = safe_gate(self.hook, obs, now)
                reading = device.status.evse_reading
                if reading is not None:
                    self._observed[device.dev_id] = (obs.plugged, reading.rfid,
                                                     reading.rfid_seq)
            gate = last_gate
            self._gates[device.dev_id] = gate
            ctx.gates[device.dev_id] = gate
            history = self._history.get(device.dev_id)
            evse = evse_input(
                registry, device, gate, self.sessions, now, ctx,
                readings=tuple(history.readings) if history is not None else (),
                commands=tuple(history.commands) if history is not None else ())
            # -- charging rules (EVSE's and user's/card's; the lower wins) ------------------
            # their formulas read the cycle's names (control/formula_env.py). A box the
            # planner may switch to one phase is judged by the rules on its L1: whether the
            # surplus covers three phases is the planner's call (docs/load-management.md
            # §13), not a reason for a PV rule to block it.
            # the override (override_device phases) beats the switch_phases variable
            forced = gate.forced_phases or _switch_phases(formulas.env, device.dev_id)
            if forced:
                evse = replace(evse, forced_phases=forced)
            judged = evse
            if evse.phase_switching and evse.forced_phases != 3:
                judged = replace(evse, phases_mask=0b001)
            ruled = self.rules.apply(
                judged, device.config.charging_rules, evse_rules_on=gate.evse_rules,
                user_rules=gate.rules, user_rules_on=gate.user_rules,
                rules_owner=gate.rules_owner, view=view, now_s=now, notes=ctx.notes,
                env=formulas.env)
            if judged is not evse:
                ruled = replace(ruled, phases_mask=evse.phases_mask)
            ctx.evses.append(ruled)
        self._rule_variables()
        surplus_w = self._surplus_expr(formulas, ctx.notes)
        formulas.finish()
        site = SiteInput(settings, tuple(ctx.groups), tuple(ctx.meters), tuple(ctx.evses),
                         surplus_w=surplus_w)
        return site, ctx

    def _rule_variables(self) -> None:
        """`CM.<name>` values the charging rules set this cycle become the variables' values
        (memory only, see CmVars.set_from_rules): other formulas and get_cm_vars see them."""
        cm_vars = self.formulas.cm_vars
        if cm_vars is None:
            return
        for verdict in self.rules.last.values():
            if verdict.variables:
                cm_vars.set_from_rules(verdict.variables)

    def _expression_meters(self, formulas: CycleFormulas, now: float) -> None:
        """Compute the expression meters (in configuration order: one may read those before
        it) from the readings of this cycle; a failing formula is a COM error of its meter."""
        devices = [d for d in self.registry.meters()
                   if isinstance(d.config, cfg.ExpressionMeterConfig) and d.enabled]
        self.expressions.forget_missing({d.dev_id for d in devices})
        for device in devices:
            assert isinstance(device.config, cfg.ExpressionMeterConfig)
            try:
                reading = self.expressions.compute(device.dev_id, device.config, formulas.env,
                                                   now, int(self.params["system_voltage"]))
            except FormulaError as err:
                message = f"expression meter: {err}"
                if device.status.last_error != message or not device.status.com_err:
                    log.warning("%s: %s", device.dev_id, message)
                device.status.record_error(message, now)
                continue
            self.registry.publish(device, reading, now)
            formulas.refresh(device)

    def _surplus_expr(self, formulas: CycleFormulas, notes: list[str]) -> int | None:
        """The `surplus_expr` param's value in W (None: off, the planner derives the surplus
        from the meters; 0 W when the formula fails)."""
        text = str(self.params["surplus_expr"] or "").strip()
        if not text:
            return None
        value = formulas.number(text, "surplus_expr", notes)
        if value is None:
            notes.append("surplus_expr failed: 0 W surplus assumed")
            return 0
        return int(max(-10_000_000, min(10_000_000, value)))

    def _persist_overdraft(self, result: PlanResult) -> None:
        seen = result.diagnostics.overdraft_ma
        if seen > int(self.params["overdraft_cur"]):
            try:
                self.params.set_runtime("overdraft_cur", seen)
            except Exception:
                log.exception("recording overdraft_cur failed")

    # -- writing --------------------------------------------------------------------------------

    async def _write(self, setpoints: Mapping[str, Setpoint], now: float) -> None:
        jobs = []
        for dev_id, setpoint in setpoints.items():
            device = self.registry.get(dev_id)
            if device is None or not isinstance(device.driver, EvseDriver):
                continue
            target = to_evse_setpoint(setpoint)
            gate = self._gates.get(dev_id)
            if gate is not None and gate.overrides & 1:  # override C: end the session too
                target = replace(target, end_session=True)
            if device.status.com_err and device.status.reading_s != now:
                # It did not answer this cycle's read: a write would only wait for its
                # timeout too. Forget what it had, so it is rewritten once it answers.
                self._written.pop(dev_id, None)
                self.stats.failed += 1
                continue
            if self._unchanged(device, target):
                self.stats.skipped += 1
                continue
            jobs.append(self._apply(device, target, now))
        if jobs:
            await asyncio.gather(*jobs)

    async def _apply(self, device: Device, target: EvseSetpoint, now: float) -> bool:
        ok = await self.registry.apply(device, target, now, self._io_budget_s)
        if ok:
            if not isinstance(device.driver, AjaxEvse):  # those get it with their next answer
                self._record_command(device, target, now)
            self.stats.writes += 1
            self._written[device.dev_id] = _Written(device.driver, target,
                                                    device.status.com_errors, now)
            self.stats.write_log.append((asyncio.get_running_loop().time(), device.dev_id,
                                         target))
        else:
            self.stats.failed += 1
            self._written.pop(device.dev_id, None)
        return ok

    def _unchanged(self, device: Device, target: EvseSetpoint) -> bool:
        """True when writing `target` would change nothing at the device."""
        last = self._written.get(device.dev_id)
        if last is None or last.driver is not device.driver or last.setpoint != target:
            return False
        status = device.status
        if status.com_errors != last.com_errors:
            return False  # it failed since: it may have restarted and lost the setpoint
        reading = status.evse_reading
        if reading is None or status.reading_s is None or status.reading_s <= last.at_s:
            return True  # no reading taken since the write: nothing says it was lost
        return not contradicts(reading, target, evse_capabilities(device.driver))

    async def release(self) -> None:
        """Leave every controllable wallbox as `disable_policy` says (on stop)."""
        if not self._controlled or not bool(self.params["lb_enabled"]):
            return
        policy = int(self.params["disable_policy"])
        jobs = []
        now = self.clock()
        async with self._lock:
            for device in self.registry.evses():
                if isinstance(device.driver, EvseDriver) and isinstance(device.config,
                                                                         cfg.EvseConfig):
                    target = policy_setpoint(device.config, policy)
                    jobs.append(self._apply(device, target, now))
            if jobs:
                await asyncio.gather(*jobs)

    # -- publishing -----------------------------------------------------------------------------

    def _publish(self, site: SiteInput, ctx: InputContext, result: PlanResult, now: float
                 ) -> None:
        registry = self.registry
        settings = site.settings
        volt = max(1, settings.system_voltage_v)
        draw: Phases = ZERO
        for evse in site.evses:
            device = registry.get(evse.dev_id)
            if device is None:
                continue
            if evse.measured_ma is not None and evse.phase_rotation_deg in (0, 120, 240):
                draw = add(draw, rotate_phases(evse.measured_ma, evse.phase_rotation_deg))
            self._evse_status(device, evse, ctx.gates.get(evse.dev_id), result, now)
        d = result.diagnostics
        site_status = registry.site
        site_status.cons_evse_power_w = d.cons_evse_power_w
        site_status.avail_evse_power_w = d.avail_evse_power_w
        site_status.grid_pwr_w = d.grid_power_w if d.grid_power_w is not None else (
            d.consumption_power_w - d.production_power_w + d.cons_evse_power_w)
        site_status.cons_pwr_w = d.consumption_power_w
        site_status.surplus_power_w = d.surplus_w
        site_status.error_pwr_w = d.error_power_w
        site_status.max_total_current_ma = settings.max_total_current_ma
        grid_ma = _site_grid_ma(site, now, volt) if d.grid_power_w is not None else None
        flows = SiteFlows(d, grid_ma, draw)
        self.formulas.flows = flows
        for device in registry.meters():
            if device.config.dev_type in VIRTUAL_KINDS:
                reading = self.virtual.reading(device.dev_id, device.config.dev_type, flows,
                                               now, volt)
                registry.publish(device, reading, now)

    def _evse_status(self, device: Device, evse: EvseInput, gate: EvseGate | None,
                     result: PlanResult, now: float) -> None:
        status = device.status
        setpoint = result.setpoints.get(evse.dev_id)
        if gate is not None:
            self._show_gate(device, gate)
        session = self.sessions.get(evse.dev_id)
        status.charging_dur_s = int(session.charging_s) if session is not None else 0
        status.pause_min_time_s = int(self.params["min_pause_time"])
        if setpoint is None:
            return
        status.lreason = setpoint.reason.text
        status.paused = bool(setpoint.paused) and result.write
        status.pause_reason = setpoint.pause_reason if result.write else ""
        timers = result.memory.evses.get(evse.dev_id)
        since = timers.paused_since_s if timers is not None else None
        status.pause_time_s = int(max(0.0, now - since)) if status.paused and since else 0

    # -- explain --------------------------------------------------------------------------------

    def explain(self, dev_id: str) -> dict[str, Any]:
        """The `cmd=explain` answer for the wallbox `dev_id` (from the last cycle)."""
        record = self.last
        device = self.registry.get(dev_id)
        last_set = device.status.last_set_charging_cur_ma if device is not None else -1
        if record is None:
            return not_planned(dev_id, 0)
        return explain(record, dev_id, last_set)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def to_evse_setpoint(setpoint: Setpoint) -> EvseSetpoint:
    """The driver-level setpoint of a plan setpoint (0 mA = charging disabled)."""
    if setpoint.current_ma <= 0:
        return EvseSetpoint(0, enabled=False, one_phase=setpoint.one_phase)
    return EvseSetpoint(int(setpoint.current_ma), enabled=True, one_phase=setpoint.one_phase)


def contradicts(reading: EvseReading, target: EvseSetpoint,
                capabilities: EvseCapabilities) -> bool:
    """The device reports a limit/enable other than `target` (it restarted, or someone else
    wrote it). Devices that do not report their limit (`current_limit_ma` 0) never do.
    A limit the box could not express better (`capabilities`: kept in `step_ma` steps, at
    most `max_current_ma`) is what we wrote."""
    limit = reading.current_limit_ma
    if limit <= 0:
        return False
    if reading.enabled != target.charging_allowed:
        return True
    if not target.charging_allowed:
        return False
    want = target.current_ma
    top_ma = capabilities.max_current_ma
    kept = want if top_ma is None else min(want, top_ma)
    return not (kept - capabilities.step_ma < limit <= want)


def _site_grid_ma(site: SiteInput, now: float, volt: int) -> Phases:
    """Sum of the fresh site grid meters' currents (building frame)."""
    known = {g.group_id for g in site.groups}
    total: Phases = ZERO
    for meter in site.meters:
        if meter.role == MeterRole.GRID and not meter.is_stale(now) and (
                meter.group_id == SITE_GROUP or meter.group_id not in known):
            total = add(total, meter_currents_ma(meter, volt))
    return total


def _switch_phases(env: Any, dev_id: str) -> int:
    """1 or 3 when a CM variable forces a switchable box's phases, else 0 (automatic).

    `<dev_id>_switch_phases` (e.g. `E2_switch_phases`) for one box, else `switch_phases` for
    all: 1 = one phase, 3 = three phases, anything else (−1) = automatic. There are no
    per-device variables, so the box's name goes into the CM variable's name."""
    for name in (f"cm.{dev_id.lower()}_switch_phases", "cm.switch_phases"):
        try:
            value = env.lookup(name)
        except Exception:  # a failing formula variable: automatic
            value = None
        if value is not None:
            return int(value) if value in (1, 3) else 0
    return 0

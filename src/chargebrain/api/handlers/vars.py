"""CM variables: `set_cm_vars` (alias `set_cm_var`) and `get_cm_vars` (admin).

- GET `set_cm_vars&name=N&val=V[&clear=1][&tmp=1]`: set one variable (`V` a number, else a
  formula); `clear=1` deletes every variable first (alone, it just clears); `tmp=1` keeps the
  change in memory only.
- POST `set_cm_vars[&clear=1][&tmp=1]` with `{"vars": [{"name": "var1", "expr": 1.5}, …]}`;
  the answer of get_cm_vars is accepted as a body too (`value`, `error` and `predefined` are
  ignored).
- `get_cm_vars` → `{"vars": [{"name", "expr", "value"[, "error"]}, …], "predefined": [{"name",
  "value", "writable"}, …]}`, vars sorted by name; a formula's value is its value now, null
  (with `error`: the message and position) when it fails.
- the predefined names (`_num_charging` …) are read-only, except `_max_total_current_prc`,
  which sets the param `max_total_cur_prc`; a formula that does not compile is refused with
  its position.
The domain is `app.cm_vars` (chargebrain/cmvars.py). Every refusal is HTTP 400 and changes
nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chargebrain.api.commands import Access, Command
from chargebrain.api.errors import bad_request
from chargebrain.cmvars import CmVarError

if TYPE_CHECKING:
    from chargebrain.api.request import ApiRequest
    from chargebrain.app import ChargeBrain

BODY_KEYS = frozenset({"vars", "predefined"})  # `predefined` (of a get answer) is ignored
VAR_KEYS = frozenset({"name", "expr", "value", "error"})


def _body_items(req: ApiRequest) -> list[tuple[Any, Any]]:
    """The (name, expr) pairs of a POST body."""
    body = req.json_body()
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object like {\"vars\": [...]}")
    unknown = sorted(set(body) - BODY_KEYS)
    if unknown:
        raise bad_request(f"unknown key {unknown[0][:64]}")
    items = body.get("vars")
    if not isinstance(items, list):
        raise bad_request("vars must be a list of {\"name\", \"expr\"} objects")
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            raise bad_request("vars must be a list of {\"name\", \"expr\"} objects")
        unknown = sorted(set(item) - VAR_KEYS)
        if unknown:
            raise bad_request(f"unknown key {unknown[0][:64]} in a variable")
        if "name" not in item:
            raise bad_request("every variable needs a name")
        if "expr" not in item:
            raise bad_request(f"variable {str(item['name'])[:64]} needs an expr")
        pairs.append((item["name"], item["expr"]))
    return pairs


def _query_items(req: ApiRequest, clear: bool) -> list[tuple[Any, Any]]:
    """The one (name, val) pair of the GET form; none for a bare `clear=1`."""
    name = req.text("name")
    if name is None:
        if clear and not req.has("val"):
            return []
        raise bad_request("missing parameter name")
    val = req.text("val")
    if val is None:
        raise bad_request("missing parameter val")
    return [(name.strip(), val)]


async def set_cm_vars(app: ChargeBrain, req: ApiRequest) -> str:
    """Set (and with `clear=1` first delete) CM variables; `tmp=1` does not persist."""
    clear = req.flag("clear")
    persist = not req.flag("tmp")
    from_body = bool(req.body.strip())
    if from_body and (req.has("name") or req.has("val")):
        raise bad_request("give the variables either in the body or as name/val, not both")
    items = _body_items(req) if from_body else _query_items(req, clear)
    try:
        update = app.cm_vars.prepare(items, clear=clear, persist=persist,
                                     from_text=not from_body)
    except CmVarError as err:
        raise bad_request(str(err)) from None
    app.cm_vars.apply(update)
    return "ok"


async def get_cm_vars(app: ChargeBrain, req: ApiRequest) -> dict[str, Any]:
    """Every variable with its expr and current value, and the predefined values."""
    return {"vars": app.cm_vars.as_list(), "predefined": app.cm_vars.predefined_list()}


COMMANDS: dict[str, Command] = {
    "set_cm_vars": Command(set_cm_vars, Access.ADMIN),
    "set_cm_var": Command(set_cm_vars, Access.ADMIN),
    "get_cm_vars": Command(get_cm_vars, Access.ADMIN),
}

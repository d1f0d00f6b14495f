"""Users, RFIDs/PINs, authorisation sessions, budgets and the transaction log.

- `model`: the user object, its JSON form and validation.
- `store`: the users table and credential lookup.
- `budgets`: kWh/minute budgets (pure accounting) and the consumption ledger.
- `sessions`: who authorised an EVSE's plug-in, and the session's overrides.
- `gate`: the pure per-EVSE decision the control cycle uses each cycle.
- `transactions`: the durable transaction log.
- `service`: `UserService`, the object API handlers and the cycle talk to.
"""

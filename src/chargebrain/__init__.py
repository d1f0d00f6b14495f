"""chargebrain — an open EV charging manager with a cFos-compatible HTTP API."""

__version__ = "0.1.0"

# The firmware generation whose API we mirror. Clients compare float("major.minor") of
# params.version against 1.2 to decide between `power_w` and `cur_charging_power`; we serve both.
API_VERSION = "1.25.0"

"""User ids: unguessable, because a user id is a credential (it authorises charging and opens
the user's own settings and transaction log)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

USER_ID_DIGITS = 20  # about 66 bits: far beyond guessing, even without the failure slowdown


def new_user_id(taken: Callable[[str], bool] = lambda _id: False) -> str:
    """A fresh decimal user id (like the original's, only longer) that `taken` does not know."""
    low = 10 ** (USER_ID_DIGITS - 1)
    while True:
        candidate = str(low + secrets.randbelow(9 * low))
        if not taken(candidate):
            return candidate

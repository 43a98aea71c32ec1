"""A deterministic measure of how much work a call does, for scaling tests that must
not depend on the machine's speed or load.

`work(fn)` counts every Python function call and every call into C made while `fn`
runs (through `sys.setprofile`), and charges the C methods that scan a list or
deque (`index`, `remove`, `insert`, `count`) the container's length, so that a
hidden `list.index` over a whole block shows up as the O(n) it is. The garbage
collector is off meanwhile (its callbacks would make the count vary). Tests
compare the work at two sizes: 4x the ops may cost at most about 5x the work.
"""

from __future__ import annotations

import gc
import sys
from collections import deque
from typing import Any, Callable

_SCANS = frozenset({"index", "remove", "insert", "count"})


def work(fn: Callable[[], Any]) -> int:
    """The number of calls `fn()` makes, scanning methods charged their container's length."""
    total = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal total
        if event == "call":
            total += 1
        elif event == "c_call":
            total += 1
            if getattr(arg, "__name__", None) in _SCANS:
                owner = getattr(arg, "__self__", None)
                if isinstance(owner, (list, deque)):
                    total += len(owner)

    was_enabled = gc.isenabled()
    gc.disable()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        if was_enabled:
            gc.enable()
    return total


def growth(small: int, large: int) -> float:
    """How many times more work the large case took."""
    return large / max(small, 1)

"""Running the requests of one Triton execution as few engine calls as their shapes allow.

Triton's dynamic batcher hands the model a list of requests. Requests whose inputs have the same
shapes past the batch dim are concatenated along it and run as one engine call, and each output
is split back by the requests' own batch sizes; requests of another shape (another sequence
length) form their own call: nothing is padded, so no model's answer depends on its neighbours.
A request the engine refuses (a shape outside its profiles) fails alone, never its group: the
group is retried request by request to find it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np


@dataclass
class Outcome:
    """One request's outputs, or the error that stopped it (`invalid`: the request's fault)."""

    outputs: dict[str, np.ndarray] | None = None
    error: str | None = None
    invalid: bool = False


def shape_key(inputs: Mapping[str, np.ndarray], batched: bool) -> tuple:
    return tuple(sorted((name, a.dtype.str, a.shape[1:] if batched else a.shape) for name, a in inputs.items()))


def run_batched(requests: Sequence[Mapping[str, np.ndarray]], run: Callable[[dict[str, np.ndarray]], dict[str, Any]],
                batched: bool, is_input_error: Callable[[BaseException], bool]) -> tuple[list[Outcome], int]:
    """Each request's outcome, and how many engine calls made them (see the module docstring).

    `run` takes one feed and returns numpy outputs; `batched` says the engine's inputs and outputs
    lead with the batch dim that requests are stacked along."""
    outcomes = [Outcome() for _ in requests]
    groups: dict[tuple, list[int]] = {}
    for i, feed in enumerate(requests):
        groups.setdefault(shape_key(feed, batched), []).append(i)
    calls = 0
    for members in groups.values():
        if not batched or len(members) == 1:
            for i in members:
                calls += 1
                outcomes[i] = _run_one(requests[i], run, is_input_error)
            continue
        sizes = [next(iter(requests[i].values())).shape[0] if requests[i] else 0 for i in members]
        feed = {name: np.concatenate([requests[i][name] for i in members], axis=0) for name in requests[members[0]]}
        calls += 1
        try:
            result = run(feed)
        except Exception as e:  # noqa: BLE001 - find the request at fault, or fail the group with the reason
            if not is_input_error(e):
                for i in members:
                    outcomes[i] = Outcome(error=f"{type(e).__name__}: {e}")
                continue
            for i in members:
                calls += 1
                outcomes[i] = _run_one(requests[i], run, is_input_error)
            continue
        offsets = np.cumsum([0, *sizes])
        for k, i in enumerate(members):
            outcomes[i] = Outcome({name: np.ascontiguousarray(value[offsets[k]:offsets[k + 1]])
                                   for name, value in result.items()})
    return outcomes, calls


def _run_one(feed: Mapping[str, np.ndarray], run: Callable[[dict[str, np.ndarray]], dict[str, Any]],
             is_input_error: Callable[[BaseException], bool]) -> Outcome:
    try:
        return Outcome({name: np.ascontiguousarray(v) for name, v in run(dict(feed)).items()})
    except Exception as e:  # noqa: BLE001 - the reason goes back to the client that sent the request
        return Outcome(error=str(e) if is_input_error(e) else f"{type(e).__name__}: {e}", invalid=is_input_error(e))

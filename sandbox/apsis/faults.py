"""Fault injection for the APSIS One sandbox, changed at runtime by tests or `/_sandbox/faults`.

Faults apply to every API route (the token endpoint included), never to `/_sandbox/`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

FAULT_STATUSES = (500, 503, 408, 429)
OUTAGE_MODES = ("503", "reset")


@dataclass(slots=True)
class Faults:
    # Share (0..1) of API answers replaced by an error, per status, e.g. {500: 0.1, 429: 0.05}.
    error_rates: dict[int, float] = field(default_factory=dict)
    # True: the request is carried out first and only its answer is replaced (an ambiguous
    # failure: the write happened, the client saw an error). False: nothing happens.
    after_write: bool = False
    # Added latency in seconds: uniform in [latency_min, latency_max] (equal values: fixed).
    latency_min: float = 0.0
    latency_max: float = 0.0
    # Total outage until this time (account clock); every API request gets 503 or a reset.
    outage_until: float = 0.0
    outage_mode: str = "503"
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def set_errors(
        self, rates: dict[int, float], *, after_write: bool = False, seed: int | None = None
    ) -> None:
        for status, share in rates.items():
            if status not in FAULT_STATUSES:
                raise ValueError(f"fault status must be one of {FAULT_STATUSES}, not {status}")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"fault share must be within 0..1, not {share}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault shares add up to more than 1")
        self.error_rates = {int(s): float(r) for s, r in rates.items() if r > 0}
        self.after_write = after_write
        if seed is not None:
            self.seed = seed
            self.rng.seed(seed)

    def set_latency(self, minimum: float, maximum: float | None = None) -> None:
        maximum = minimum if maximum is None else maximum
        if minimum < 0 or maximum < minimum:
            raise ValueError("latency must satisfy 0 <= min <= max")
        self.latency_min, self.latency_max = float(minimum), float(maximum)

    def start_outage(self, now: float, seconds: float = math.inf, mode: str = "503") -> None:
        if mode not in OUTAGE_MODES:
            raise ValueError(f"outage mode must be one of {OUTAGE_MODES}, not {mode!r}")
        self.outage_until = now + seconds
        self.outage_mode = mode

    def end_outage(self) -> None:
        self.outage_until = 0.0

    def clear(self) -> None:
        self.error_rates = {}
        self.after_write = False
        self.latency_min = self.latency_max = 0.0
        self.outage_until = 0.0

    @property
    def active(self) -> bool:
        """Any fault configured at all (the hot path skips everything when not)."""
        return bool(self.error_rates) or self.latency_max > 0 or self.outage_until > 0

    def latency(self) -> float:
        if self.latency_max <= 0:
            return 0.0
        if self.latency_max == self.latency_min:
            return self.latency_min
        return self.rng.uniform(self.latency_min, self.latency_max)

    def pick_error(self) -> int | None:
        """Draw one answer: a fault status, or None for a normal answer."""
        if not self.error_rates:
            return None
        draw = self.rng.random()
        for status, share in self.error_rates.items():
            if draw < share:
                return status
            draw -= share
        return None

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "error_rates": {str(s): r for s, r in self.error_rates.items()},
            "after_write": self.after_write,
            "latency": [self.latency_min, self.latency_max],
            "outage": {
                "active": self.outage_until > now,
                "seconds_left": (None if math.isinf(self.outage_until) else max(0.0, self.outage_until - now))
                if self.outage_until > now
                else 0.0,
                "mode": self.outage_mode,
            },
            "seed": self.seed,
        }

    def update_from_json(self, body: dict[str, Any], now: float) -> None:
        """Apply a `/_sandbox/faults` body; absent keys stay as they are."""
        if "error_rates" in body:
            rates = body["error_rates"] or {}
            self.set_errors(
                {int(s): float(r) for s, r in rates.items()},
                after_write=bool(body.get("after_write", self.after_write)),
                seed=body.get("seed"),
            )
        elif "after_write" in body:
            self.after_write = bool(body["after_write"])
        if "latency" in body:
            lat = body["latency"]
            if isinstance(lat, list | tuple):
                self.set_latency(float(lat[0]), float(lat[1]) if len(lat) > 1 else None)
            else:
                self.set_latency(float(lat or 0.0))
        if "outage" in body:
            outage = body["outage"]
            if not outage:
                self.end_outage()
            else:
                seconds = outage.get("seconds") if isinstance(outage, dict) else None
                mode = outage.get("mode", "503") if isinstance(outage, dict) else "503"
                self.start_outage(now, math.inf if seconds is None else float(seconds), str(mode))

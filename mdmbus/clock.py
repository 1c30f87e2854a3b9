"""The shared clock: simulated time that can run faster than real time, alike in every process.

simulated = origin + (real - origin) * speed. Every process of one run gets the same
MDMBUS_CLOCK_ORIGIN and MDMBUS_CLOCK_SPEED, so a 120-day retention lifecycle and one-hour
session rules play out in seconds, and all processes agree on what "now" is. Deadlines are
stored in simulated time; ``to_real_seconds`` turns a simulated span back into real seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from mdmbus.settings import Settings

__all__ = ["Clock"]


@dataclass(frozen=True)
class Clock:
    speed: float = 1.0
    origin: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "Clock":
        return cls(speed=settings.clock_speed, origin=settings.clock_origin or time.time())

    def now(self) -> float:
        """Simulated Unix time, seconds."""
        real = time.time()
        return self.origin + (real - self.origin) * self.speed

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=timezone.utc)

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def to_real_seconds(self, simulated_seconds: float) -> float:
        return simulated_seconds / self.speed

    def real_time_of(self, simulated: float) -> float:
        """The real Unix time at which the clock shows ``simulated``."""
        return self.origin + (simulated - self.origin) / self.speed

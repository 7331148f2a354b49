"""``FakeClock``: a test double for ``time.monotonic`` and ``time.sleep`` together, so code that
waits (a retry schedule, a grace period) runs its whole course at once and tests assert what
it waited, not how long it took. The real clock is what every other test runs on."""

from __future__ import annotations

from collections.abc import Callable


class FakeClock:
    """Sleeping moves the clock; ``at(t, fn)`` runs ``fn`` once the clock reaches ``t`` (as
    another thread of the real program would have)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self._due: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._due.append((when, fn))

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        for item in [item for item in self._due if item[0] <= self.now]:
            self._due.remove(item)
            item[1]()

"""Essex's ``nova/manager.py``: a service's manager and its periodic tasks.

A method marked ``@periodic_task`` runs at every tick of the service's periodic loop
(``--periodic_interval`` seconds, the first tick one interval after start);
``@periodic_task(ticks_between_runs=N)`` skips N ticks between two runs, the first run included:
it runs at tick N+1, 2(N+1), ... A failing task is logged and the others still run. With
``--verbose`` each tick logs Essex's "Running periodic task <Manager>.<task>" (or "Skipping ...").

>>> class Counter(Manager):
...     def __init__(self): self.every, self.sparse = 0, 0
...     @periodic_task
...     def _every(self): self.every += 1
...     @periodic_task(ticks_between_runs=2)
...     def _sparse(self): self.sparse += 1
>>> c = Counter()
>>> for _ in range(6): c.periodic_tasks()
>>> c.every, c.sparse
(6, 2)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

LOG = logging.getLogger("nova.manager")

F = TypeVar("F", bound=Callable[..., Any])


def periodic_task(task: F | None = None, *, ticks_between_runs: int = 0) -> Any:
    """Mark a method as a periodic task, bare or with ``ticks_between_runs``."""
    def mark(method: F) -> F:
        method._periodic_task = True  # type: ignore[attr-defined]
        method._ticks_between_runs = ticks_between_runs  # type: ignore[attr-defined]
        return method
    return mark(task) if task is not None else mark


class Manager:
    """Runs its periodic tasks, in definition order, one tick per ``periodic_tasks()`` call."""

    def _periodic(self) -> list[tuple[str, Callable[[], None], int]]:
        tasks = []
        for klass in reversed(type(self).__mro__):
            for name, value in vars(klass).items():
                if getattr(value, "_periodic_task", False) and name not in [t[0] for t in tasks]:
                    tasks.append((name, getattr(self, name), value._ticks_between_runs))
        return tasks

    def periodic_tasks(self) -> None:
        skips: dict[str, int] = self.__dict__.setdefault("_ticks_to_skip", {})
        for name, task, between in self._periodic():
            full_name = f"{type(self).__name__}.{name}"
            left = skips.setdefault(name, between)
            if left > 0:
                LOG.debug("Skipping %s, %s ticks left until next run", full_name, left)
                skips[name] = left - 1
                continue
            skips[name] = between
            LOG.debug("Running periodic task %s", full_name)
            try:
                task()
            except Exception:
                LOG.exception("Error during %s", full_name)

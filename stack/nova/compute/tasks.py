"""The instance tasks of nova-api: builds and deletes run in threads, one at a time per instance.

Essex cast each step to the scheduler and the compute through AMQP and returned; here a task
thread takes the step instead, and the API returns as soon as the task is started. A stop waits
a little for running tasks (``wait``); what it cuts short stays recorded in the instance's
task_state and is started again by the next nova-api.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

LOG = logging.getLogger("nova.compute.tasks")

Task = Callable[[int], None]


class TaskRunner:
    """Runs ``task(instance_id)`` in a daemon thread, holding that instance's lock."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}
        self._running: set[threading.Thread] = set()

    def lock(self, instance_id: int) -> threading.Lock:
        """The lock every task of ``instance_id`` holds while it runs."""
        with self._guard:
            return self._locks.setdefault(instance_id, threading.Lock())

    def submit(self, task: Task, instance_id: int) -> None:
        thread = threading.Thread(target=self._run, args=(task, instance_id), daemon=True,
                                  name=f"{task.__name__.strip('_')}-{instance_id}")
        with self._guard:
            self._running.add(thread)
        thread.start()

    def _run(self, task: Task, instance_id: int) -> None:
        try:
            with self.lock(instance_id):
                task(instance_id)
        except Exception:  # the row keeps its task_state; a restart resumes it
            LOG.exception("%s of instance %s failed unexpectedly", task.__name__, instance_id)
        finally:
            with self._guard:
                self._running.discard(threading.current_thread())

    def wait(self, timeout: float) -> bool:
        """True once no task runs (tests, and a clean stop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._guard:
                if not self._running:
                    return True
            time.sleep(0.05)
        return False

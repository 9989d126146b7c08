"""SIGINT and SIGTERM while training: let the step finish, then save it and stop (errors.TrainingInterrupted)."""
import signal
import threading

from .errors import TrainingInterrupted


class StopSignals:
    """SIGINT and SIGTERM while training: let the step finish, then stop and save; elsewhere, stop at once.

    `deferring` is set around the training loop: a signal then only sets `received`, which the
    loop checks after each step. Outside it (loading data, say) a signal raises TrainingInterrupted
    at once: nothing has been trained, so nothing is lost. A second signal while the step is being
    saved changes nothing. Handlers are installed only in the main thread (Python allows no other).
    """

    def __init__(self):
        self.received = None
        self.deferring = False
        self.previous = {}

    def _handle(self, number, frame):
        if self.received is None:
            self.received = number
        if not self.deferring:
            raise TrainingInterrupted(number)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exception):
        for number, handler in self.previous.items():
            signal.signal(number, handler)

"""Ctrl-C during a job: the first asks to stop after the iteration in flight, the second stops at once."""

import signal
import threading


class StopFlag:
    """SIGINT while a job runs: the first Ctrl-C sets `requested` (a KeyboardInterrupt raised wherever the
    signal lands can be swallowed, e.g. in a finalizer), and the loop stops at its next check, saving
    what it reached; a second raises KeyboardInterrupt at once. Installed only in the main thread, and
    the caller's handler is restored on exit."""

    def __init__(self, say):
        self.requested, self._say, self._previous = False, say, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self._say("Ctrl-C: stopping after this iteration (Ctrl-C again to stop at once)")

    def shield(self):
        """Saving takes a moment; Ctrl-C must not cut it short (the judge after it asks `requested`)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._handle_late)

    def _handle_late(self, signum, frame):
        self.requested = True
        self._say("Ctrl-C: the images are being saved; stopping after that")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

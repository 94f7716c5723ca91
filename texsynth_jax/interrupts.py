"""Stopping a job: Ctrl-C (SIGINT) by a person, SIGTERM by a machine about to go away.

Ctrl-C: the first asks to stop after the iteration in flight, the second stops at once. SIGTERM is how
cloud schedulers announce a preemption (Spot and preemptible VMs, TPU maintenance, Kubernetes): about 30 s
before the machine goes. It stops after the iteration in flight too, but always writes a checkpoint, and
the command exits with EXIT_PREEMPTED so that a scheduler runs it again (with --resume it continues).
"""

import signal
import threading

# sysexits.h EX_TEMPFAIL, "temporary failure; the user is invited to retry": what batch schedulers (e.g. a
# Kubernetes podFailurePolicy, a Slurm requeue script) are told to retry on, unlike 1, 2 or 130.
EXIT_PREEMPTED = 75


class Preempted(BaseException):
    """SIGTERM arrived outside a synthesis loop (while compiling, before the first iteration): nothing of this
    run's was written yet; a BaseException, like KeyboardInterrupt, so that no `except Exception` keeps it."""


class StopFlag:
    """SIGINT or SIGTERM while a job runs sets `requested` (an exception raised wherever the signal lands can
    be swallowed, e.g. in a finalizer), and the loop stops at its next check, saving what it reached;
    `preempted` says that it was SIGTERM. A second Ctrl-C raises KeyboardInterrupt at once; a second SIGTERM
    changes nothing (the checkpoint is on its way). Installed only in the main thread, and the caller's
    handlers are restored on exit."""

    def __init__(self, say):
        self.requested, self.preempted, self._say, self._previous = False, False, say, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.requested = True
        if signum == signal.SIGTERM:
            if not self.preempted:
                self._say("SIGTERM (preemption): stopping after this iteration with a checkpoint")
            self.preempted = True
            return
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self._say("Ctrl-C: stopping after this iteration (Ctrl-C again to stop at once)")

    def shield(self):
        """Saving takes a moment; Ctrl-C must not cut it short (the judge after it asks `requested`)."""
        if self._previous:
            signal.signal(signal.SIGINT, self._handle_late)

    def _handle_late(self, signum, frame):
        self.requested = True
        self._say("Ctrl-C: the images are being saved; stopping after that")

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


class PreemptionRaises:
    """Outside the synthesis loops (where StopFlag takes over), SIGTERM raises Preempted, so that a job
    preempted while it compiles still ends with one line and EXIT_PREEMPTED rather than being killed."""

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    @staticmethod
    def _handle(signum, frame):
        raise Preempted()

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

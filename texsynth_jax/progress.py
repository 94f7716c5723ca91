"""Progress of a run: the `synthesize` callback that logs, draws a bar, snapshots and remembers.

It keeps the last images and the loss history on the host side of the donated state, so an
interrupted run (Ctrl-C) can still save what it reached.
"""

import signal
import sys
import time
from typing import Callable

import jax
import numpy as np

from texsynth_jax.synthesis import SynthState, image_from_latent


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_losses(losses: np.ndarray, seeds) -> str:
    """Per seed when there are few, else the mean and range."""
    if len(seeds) <= 4:
        return "loss " + " ".join(f"{l:.4g}" for l in losses) + (f" (seeds {','.join(map(str, seeds))})"
                                                                   if len(seeds) > 1 else "")
    return f"loss mean {np.mean(losses):.4g} (min {np.min(losses):.4g}, max {np.max(losses):.4g})"


class Progress:
    """Callback for `synthesize`: call it with the batched state after every iteration.

    Attributes after each call: `step` (iterations done), `images` (float32 [B, H, W, 3] device
    array, a copy that outlives the donated state), `losses` (list of float32 [B] numpy arrays).
    """

    def __init__(self, iterations: int, seeds, log_every: int, save_every: int = 0,
                 on_snapshot: Callable[[int, np.ndarray], None] | None = None,
                 stream=None, bar: bool | None = None):
        self.iterations, self.seeds = iterations, list(seeds)
        self.log_every, self.save_every, self.on_snapshot = log_every, save_every, on_snapshot
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.step, self.images, self.losses = 0, None, []
        self.start = time.perf_counter()
        self.first_step_s = None  # includes compilation
        self.stop_requested = False  # set by a SIGINT handler; honoured after the current iteration
        self._bar_drawn = False

    def request_stop(self, signum=None, frame=None) -> None:
        """A SIGINT handler: stop after the iteration in flight; a second Ctrl-C stops at once.

        A KeyboardInterrupt raised wherever the signal lands can be swallowed (e.g. inside a
        finalizer, which only prints "Exception ignored"), so the first Ctrl-C only sets a flag.
        """
        self.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self._write("Ctrl-C: stopping after this iteration (Ctrl-C again to stop at once)\n")

    def begin(self) -> None:
        """Start the clock for the first iteration (call just before `synthesize`)."""
        self.start = time.perf_counter()

    def resume(self, step: int, losses) -> None:
        """Continue a checkpointed run: `step` iterations done, with their per-iteration losses."""
        self.step, self.losses = step, list(losses)

    def __call__(self, state: SynthState, before_stop=None) -> None:
        """Record one iteration. Rows of `state` past len(seeds) are padding (seed meshes) and are
        dropped; `before_stop(state)` runs before a requested stop (to checkpoint it)."""
        n = len(self.seeds)
        # One small transfer per iteration: the iterations depend on each other, so waiting here
        # loses no parallelism, and it keeps the rate, the ETA and Ctrl-C true to the device.
        loss = np.asarray(jax.device_get(state.opt_state.value))[:n]
        self.images = image_from_latent(state.latent[:n])  # a new buffer: `state` is donated next step
        self.losses.append(loss)
        self.step += 1
        now = time.perf_counter()
        if self.first_step_s is None:
            self.first_step_s, self._rate_start = now - self.start, now
        if self.save_every and self.step % self.save_every == 0 and self.step < self.iterations and self.on_snapshot:
            self.on_snapshot(self.step, np.asarray(jax.device_get(self.images)))
        if self.step % self.log_every == 0 or self.step == self.iterations or self.step == 1:
            self._write(self.line(loss, now) + "\n")
        elif self.bar:
            self._draw_bar(now)
        if self.stop_requested:
            if before_stop is not None:
                before_stop(state)
            raise KeyboardInterrupt  # here, between iterations, with `images` and `losses` consistent

    def rate(self, now: float) -> float | None:
        """Iterations per second after the first (which includes compilation)."""
        if self.step < 2:
            return None
        return (self.step - 1) / max(now - self._rate_start, 1e-9)

    def line(self, loss: np.ndarray, now: float) -> str:
        width = len(str(self.iterations))
        parts = [f"iteration {self.step:{width}d}/{self.iterations}", format_losses(loss, self.seeds)]
        rate = self.rate(now)
        if rate is None:
            parts.append(f"first iteration {self.first_step_s:.1f}s (includes compiling)")
        else:
            parts += [f"{rate:.2f} it/s", f"ETA {format_duration((self.iterations - self.step) / rate)}"]
        return "  ".join(parts)

    def _draw_bar(self, now: float) -> None:
        width = 30
        filled = width * self.step // self.iterations
        rate = self.rate(now)
        eta = f" ETA {format_duration((self.iterations - self.step) / rate)}" if rate else ""
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.step}/{self.iterations}{eta} ")
        self.stream.flush()
        self._bar_drawn = True

    def _write(self, text: str) -> None:
        if self._bar_drawn:
            text = "\r\033[K" + text  # clear the bar, then the line scrolls above where it is redrawn
            self._bar_drawn = False
        self.stream.write(text)
        self.stream.flush()

    def finish(self) -> None:
        """End a bar line that is still drawn (e.g. on Ctrl-C)."""
        if self._bar_drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_drawn = False

"""Progress of a run: log lines, a terminal bar, and the loss history, fetched only when shown."""

import sys
import time

import jax
import numpy as np


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


class _Silent:
    """A stream that drops everything (the progress of hosts other than process 0)."""

    def write(self, text):
        pass

    def flush(self):
        pass

    def isatty(self):
        return False


SILENT = _Silent()


class Progress:
    """Progress lines, a bar, and the loss history of one source's run, fed by `Engine.run`'s `on_step`.

    Nothing is fetched from the device between log lines: the losses of the iterations since the
    last line come over in one transfer when a line is written (or `history()` is asked for), which
    also keeps the rate and ETA true to the device, since the host waits for it there.
    """

    def __init__(self, iterations: int, seeds, log_every: int, stream=None, bar: bool | None = None):
        self.iterations, self.seeds, self.log_every = iterations, list(seeds), log_every
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.step, self._losses, self._pending = 0, [], []  # host arrays [B]; device arrays [padded]
        self.start = self._rate_start = time.perf_counter()
        self.first_step_s = None  # includes compilation
        self._rate = None  # iterations per second, as of the last synchronised line
        self._bar_drawn = False

    def begin(self, step: int = 0, losses=()) -> None:
        """Start the clock; `step` iterations already done (a checkpoint) with their losses [B]."""
        self.step, self._losses, self._pending = step, [np.asarray(l) for l in losses], []
        self.start = time.perf_counter()

    def update(self, step: int, new_losses) -> None:
        """Iterations up to `step` are dispatched; `new_losses`: their device arrays [padded] (unfetched)."""
        self._pending += list(new_losses)
        first = self.first_step_s is None
        self.step = step
        if first or step % self.log_every < len(new_losses) or step == self.iterations:
            now = self._sync()
            if first:
                self.first_step_s, self._rate_start, self._rate_steps = now - self.start, now, step
            self._write(self.line(self._losses[-1], now) + "\n")
        elif self.bar:
            self._draw_bar()

    def history(self) -> list[np.ndarray]:
        """The loss [B] of every iteration so far, on the host."""
        self._sync()
        return self._losses

    def _sync(self) -> float:
        n = len(self.seeds)
        if self._pending:
            self._losses += [np.asarray(l)[:n] for l in jax.device_get(self._pending)]
            self._pending = []
        now = time.perf_counter()
        if self.first_step_s is not None and self.step > self._rate_steps:
            self._rate = (self.step - self._rate_steps) / max(now - self._rate_start, 1e-9)
        return now

    def rate(self) -> float | None:
        """Iterations per second after the first (which includes compilation), as last measured."""
        return self._rate

    def line(self, loss: np.ndarray, now: float) -> str:
        width = len(str(self.iterations))
        parts = [f"iteration {self.step:{width}d}/{self.iterations}", format_losses(loss, self.seeds)]
        if self._rate is None:
            parts.append(f"first iteration {self.first_step_s:.1f}s (includes compiling)")
        else:
            parts += [f"{self._rate:.2f} it/s", f"ETA {format_duration((self.iterations - self.step) / self._rate)}"]
        return "  ".join(parts)

    def _draw_bar(self) -> None:
        width = 30
        filled = width * self.step // self.iterations
        eta = f" ETA {format_duration((self.iterations - self.step) / self._rate)}" if self._rate else ""
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.step}/{self.iterations}{eta} ")
        self.stream.flush()
        self._bar_drawn = True

    def say(self, text: str) -> None:
        """A line of its own (a checkpoint, Ctrl-C), clearing the bar first."""
        self._write(text + "\n")

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

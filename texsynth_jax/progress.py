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

    def __init__(self, iterations: int, seeds, log_every: int, stream=None, bar: bool | None = None,
                 scales=None, then: str = ""):
        """scales: [(last iteration, (height, width))] of every scale, coarsest first (default: one scale
        of `iterations`); the ETA counts the scales to come at the current rate times their pixels.
        then: what follows the iterations, added to the ETA (e.g. "+ judge")."""
        self.iterations, self.seeds, self.log_every = iterations, list(seeds), log_every
        self.scales = list(scales) if scales else [(iterations, None)]
        self.then = then
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.step, self._losses, self._pending = 0, [], []  # host arrays [B]; device arrays [padded]
        self.start = self._rate_start = time.perf_counter()
        self._rate_steps = 0
        self.first_step_s = None  # includes compilation
        self._rate = None  # iterations per second at the current scale, as of the last synchronised line
        self._rate_scale = 0  # the scale the rate was measured at
        self._bar_drawn = False

    def begin(self, step: int = 0, losses=()) -> None:
        """Start the clock; `step` iterations already done (a checkpoint) with their losses [B]."""
        self.step, self._losses, self._pending = step, [np.asarray(l) for l in losses], []
        self.start = time.perf_counter()
        self._rate_scale = self.scale_of(step + 1)

    def scale_of(self, step: int) -> int:
        """The scale that iteration `step` runs at."""
        return next((k for k, (end, _) in enumerate(self.scales) if step <= end), len(self.scales) - 1)

    def update(self, step: int, new_losses) -> None:
        """Iterations up to `step` are dispatched; `new_losses`: their device arrays [padded] (unfetched)."""
        self._pending += list(new_losses)
        first = self.first_step_s is None
        scale = self.scale_of(step)
        new_scale = scale != self._rate_scale  # its first dispatch compiled that scale's programs
        self.step = step
        if first or new_scale or step % self.log_every < len(new_losses) or step == self.iterations:
            now = self._sync()
            if first:
                self.first_step_s, self._rate_start, self._rate_steps = now - self.start, now, step
            if new_scale:  # the rate of the last scale, scaled by pixels, until this one's is measured
                if self._rate is not None:
                    self._rate *= self._pixels(self._rate_scale) / self._pixels(scale)
                self._rate_scale, self._rate_start, self._rate_steps = scale, now, step
            self._write(self.line(self._losses[-1], now) + "\n")
        elif self.bar:
            self._draw_bar()
    def history(self) -> list[np.ndarray]:
        """The loss [B] of every iteration so far, on the host."""
        self._sync()
        return self._losses

    def latest(self) -> np.ndarray | None:
        """The loss [B] of the last iteration fetched (at the last line), without fetching; None before."""
        return self._losses[-1] if self._losses else None

    def _sync(self) -> float:
        n = len(self.seeds)
        if self._pending:
            self._losses += [np.asarray(l)[:n] for l in jax.device_get(self._pending)]
            self._pending = []
        now = time.perf_counter()
        if (self.first_step_s is not None and self.step > self._rate_steps
                and self.scale_of(self.step) == self._rate_scale):
            self._rate = (self.step - self._rate_steps) / max(now - self._rate_start, 1e-9)
        return now

    def _pixels(self, scale: int) -> int:
        size = self.scales[scale][1]
        return 1 if size is None else size[0] * size[1]

    def remaining_s(self) -> float | None:
        """Seconds to the last iteration: this scale's iterations left at the measured rate, and each
        later scale's at that rate times its pixels over this scale's; None before a rate is known."""
        if self._rate is None:
            return None
        scale, left = self.scale_of(self.step), 0.0
        for k in range(scale, len(self.scales)):
            begin = self.step if k == scale else self.scales[k - 1][0]
            left += (self.scales[k][0] - begin) * self._pixels(k) / self._pixels(scale)
        return left / self._rate

    def eta(self) -> str:
        left = self.remaining_s()
        return "" if left is None else f"ETA {format_duration(left)}" + (f" {self.then}" if self.then else "")

    def rate(self) -> float | None:
        """Iterations per second after the first (which includes compilation), as last measured."""
        return self._rate

    def line(self, loss: np.ndarray, now: float) -> str:
        width = len(str(self.iterations))
        where = f"iteration {self.step:{width}d}/{self.iterations}"
        if len(self.scales) > 1:  # the loss starts anew at each scale's size: say which one it is
            scale = self.scale_of(self.step)
            h, w = self.scales[scale][1]
            where += f" [scale {scale + 1}/{len(self.scales)}, {h}x{w}]"
        parts = [where, format_losses(loss, self.seeds)]
        if self._rate is None:
            parts.append(f"first iteration {self.first_step_s:.1f}s (includes compiling)")
        else:
            parts += [f"{self._rate:.2f} it/s", self.eta()]
        return "  ".join(parts)

    def _draw_bar(self) -> None:
        width = 30
        filled = width * self.step // self.iterations
        eta = f" {self.eta()}" if self._rate else ""
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


def format_schedule(config) -> str:
    """"300 iterations at 256x256", or every scale's: "100 at 64x64, 50 at 128x128, 50 at 256x256"."""
    scales = [f"{n} at {h}x{w}" for n, (h, w) in zip(config.scale_iterations, config.scale_sizes)]
    return scales[0].replace(" at", " iterations at") if len(scales) == 1 else "iterations " + ", ".join(scales)

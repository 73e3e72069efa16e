"""Progress and problem lines on stderr, so they never mix with a command's real output on stdout."""

import sys
import time


def say(message, enabled=True):
    if enabled:
        print(message, file=sys.stderr, flush=True)


class Progress:
    """One self-updating line, e.g. 'downloading mnist.npz: 5.2/11.5 MB (45%)'.

    Silent when disabled; when stderr is not a terminal (CI logs) only the final line is written.
    Keras's Progbar would do, but it writes to stdout and importing Keras costs seconds.
    """

    def __init__(self, label, total=None, enabled=True, megabytes=False):
        self.label, self.total, self.enabled, self.megabytes = label, total, enabled, megabytes
        self.done = 0
        self.live = enabled and sys.stderr.isatty()
        self.last_draw = 0.0

    def update(self, n=1):
        self.done += n
        if self.live and time.monotonic() - self.last_draw > 0.1:
            self._draw(end="")
            self.last_draw = time.monotonic()

    def _draw(self, end):
        def fmt(n):
            return f"{n / 1e6:.1f}" if self.megabytes else str(n)

        text = f"{self.label}: {fmt(self.done)}"
        if self.total:
            text += f"/{fmt(self.total)}{' MB' if self.megabytes else ''} ({self.done / self.total:.0%})"
        elif self.megabytes:
            text += " MB"
        print(f"\r{text}", end=end, file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._draw(end="\n")

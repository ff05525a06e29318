# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress lines of long work on the controller, for the action plugins (hf_carry's stream, hf_snapshot's
download): past FIRST seconds, one line every EVERY seconds with the bytes done, the total and the rate.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import threading
import time

from ansible.module_utils.common.text.formatters import bytes_to_human
from ansible.utils.display import Display

display = Display()


# A size as Ansible and the modules write one (powers of 1024: '87.37 MB').
human = bytes_to_human


class Progress:
    """Counts the bytes of the stream; past FIRST seconds, a line every EVERY seconds (from a thread, so that a
    long chunk or a long import still reports)."""

    FIRST = 30.0
    EVERY = 15.0

    def __init__(self, host, total, clock=time.monotonic):
        self.host, self.total, self.clock = host, total, clock
        self.started = clock()
        self.last = None
        self.sent = 0
        self.held = 0
        self.phase = "sending"
        self._stop = threading.Event()
        self._thread = None

    def due(self, now):
        """Whether a line is due at `now`."""
        return now - self.started >= self.FIRST and (self.last is None or now - self.last >= self.EVERY)

    def line(self, now):
        """The progress line due at `now`, or None."""
        if not self.due(now):
            return None
        self.last = now
        return self.text(now - self.started)

    def text(self, elapsed):
        done = self.sent + self.held
        return "hf_carry %s: %s, %s of %s (%d%%) at %s/s%s" % (
            self.host, self.phase, human(done), human(self.total), 100 * done // max(self.total, 1),
            human(self.sent / elapsed if elapsed else 0), ", %s already there" % human(self.held) if self.held else "")

    def start(self):
        self._thread = threading.Thread(target=self._run, name="hf_carry-progress", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(1.0):
            text = self.line(self.clock())
            if text:
                display.display(text)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class DownloadProgress(Progress):
    """hf_snapshot's line: `hf_snapshot <host> <repo_id>: <done> of <total> (<pct>%) at <rate>/s`, the rate over
    the whole task so far."""

    def __init__(self, host, repo_id, total, clock=time.monotonic, started=None):
        super().__init__(host, total, clock)
        self.repo_id = repo_id
        if started is not None:
            self.started = started

    def text(self, elapsed):
        done = min(self.sent, self.total) if self.total else self.sent
        return "hf_snapshot %s %s: %s of %s (%d%%) at %s/s" % (
            self.host, self.repo_id, human(done), human(self.total), 100 * done // max(self.total, 1),
            human(self.sent / elapsed if elapsed else 0))

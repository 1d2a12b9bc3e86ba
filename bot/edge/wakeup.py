"""A nudge from the web process to the work process: "work was just queued".

The queue is the truth; the nudge only saves the work process from polling it often. `serve`
names a Unix datagram socket per work process it starts (in a folder of its own) before it
starts them and forks gunicorn's worker: each work process is told its own
(`ROLLOUT_WAKE_SOCKET`), binds it and waits there between claims; the web process is told them
all (the same variable, joined by `os.pathsep`) and sends one byte to each after each commit
that queued work. Each one's claim then takes what its free threads can run.

Nothing depends on the nudge arriving: a send that fails (no work process bound yet, its buffer
full because it is busy and will claim anyway, a platform without Unix sockets) is ignored,
and the work process still polls the queue every `FALLBACK_POLL_S`, which is also how work
queued by another replica's web process is found, and work whose nudge was lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

WAKE_ENV = "ROLLOUT_WAKE_SOCKET"
FALLBACK_POLL_S = 1.0  # how often the queue is looked at without a nudge


def make_addresses(count: int) -> list[str]:
    """For `serve`: a fresh socket path for each of `count` work processes, all of them put in
    the environment its children inherit (the web process nudges each)."""
    if not hasattr(socket, "AF_UNIX"):
        return []
    folder = tempfile.mkdtemp(prefix="rollout-bot-wake-")
    addresses = [str(Path(folder) / f"wake-{n}.sock") for n in range(count)]
    os.environ[WAKE_ENV] = os.pathsep.join(addresses)
    return addresses


def remove_address(address: str) -> None:
    shutil.rmtree(Path(address).parent, ignore_errors=True)


def configured_address() -> str | None:
    return os.environ.get(WAKE_ENV, "").strip() or None


class Nudger:
    """The web process's side: one non-blocking datagram socket, shared by every thread
    (`sendto` on a datagram socket is thread-safe), opened on first use so it is made in
    gunicorn's worker, after the fork. `address`: one socket path, or several joined by
    `os.pathsep` (one per work process)."""

    def __init__(self, address: str | None) -> None:
        self.addresses = [a for a in (address or "").split(os.pathsep) if a]
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket | None:
        if self._sock is None:
            with self._lock:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    sock.setblocking(False)
                    self._sock = sock
        return self._sock

    def nudge(self) -> None:
        if not self.addresses:
            return
        try:
            sock = self._socket()
        except OSError:
            return  # no socket to be had (out of descriptors): the work process polls
        for address in self.addresses:
            try:
                if sock is not None:
                    sock.sendto(b"w", address)
            except OSError:
                # Not bound (yet), or its buffer is full of nudges it has not read: either way
                # the work process finds the work by polling, or is about to claim anyway.
                pass


class WakeListener:
    """The work process's side: a thread that waits on the socket and calls `wake` for each
    burst of nudges (everything already in the buffer is read at once)."""

    def __init__(self, address: str, wake: threading.Event) -> None:
        self.address = address
        self.wake = wake
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(address).st_mode):
                os.unlink(address)  # a previous work process's socket; anything else is not ours
        self._sock.bind(address)
        self._thread = threading.Thread(target=self._listen, name="wake-listener", daemon=True)
        self._closed = False

    def start(self) -> WakeListener:
        self._thread.start()
        return self

    def _listen(self) -> None:
        # A timeout, so the thread notices `close` (closing a socket does not end a recv).
        self._sock.settimeout(0.5)
        while not self._closed:
            try:
                self._sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                if not self._closed:
                    log.exception("the wake-up socket failed: polling the queue only")
                return
            with contextlib.suppress(OSError):
                while True:  # the rest of the burst, one wake-up for all of it
                    self._sock.recv(64, socket.MSG_DONTWAIT)
            self.wake.set()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.address)


def listen(address: str | None, wake: threading.Event) -> WakeListener | None:
    """Binds the socket, or says why the work process polls only."""
    if address is None:
        return None
    try:
        return WakeListener(address, wake).start()
    except OSError as exc:
        log.warning("cannot listen for wake-ups at %s (%s): polling the queue only", address, exc)
        return None

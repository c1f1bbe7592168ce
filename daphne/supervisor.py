"""``--workers N``: one process binds the endpoints, N worker processes serve them.

The supervisor binds every listening socket once with the :mod:`socket`
module (it never installs a reactor nor imports the application), then runs
``python -m daphne`` N times with the user's own arguments plus two internal
ones: the inherited listening sockets (``--worker-sockets``) and a control
socket (``--worker-control-fd``). A worker adopts the sockets, wrapping TLS
itself for ``ssl:`` endpoints, and writes one byte on the control socket once
it is listening; if the supervisor goes away, the worker reads end of file
there and stops gracefully.

Workers adopt the sockets as shared ports (:mod:`daphne.shared_ports`): a
worker that stops leaves the socket to the others, and a UNIX socket's path
belongs to the supervisor, which binds it (with its mode and lock file) and
removes it when it exits.

The supervisor restarts a worker that dies (with a backoff), replaces them
one by one on SIGHUP, adds or removes one on SIGTTIN / SIGTTOU, and drains
them all on SIGTERM / SIGINT (a second one kills them). Workers ignore
SIGINT, SIGHUP, SIGTTIN and SIGTTOU, which a terminal or a process manager
may send to the whole process group: the supervisor decides, and tells a
worker to drain with SIGTERM (any number of times: it never cuts requests
short; the supervisor's SIGKILL does that).

Start-up failures: the first worker starts alone, and if it exits before it
is ready (the application cannot be imported, a lifespan startup fails) the
supervisor exits with status 1 after the worker's own error message. Later,
:data:`MAX_START_FAILURES` workers in a row that exit before they are ready,
while no worker is serving, end the supervisor the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.python.failure import Failure
from twisted.python.lockfile import FilesystemLock

from .config import ConfigError
from .endpoints import EndpointError, fd_endpoint, server_endpoint
from .layers import InMemoryChannelLayer
from .server import ServerError
from .shared_ports import AdoptShared, adopt

logger = logging.getLogger(__name__)

#: Worker restarts back off after quick exits: 0.5 s, 1 s, 2 s ... up to this.
MAX_RESTART_DELAY = 30.0
FIRST_RESTART_DELAY = 0.5
#: A worker that exits within this many seconds of being ready exited quickly.
MIN_UPTIME = 5.0
#: Workers in a row that exit before they are ready, with none serving, after
#: which the supervisor gives up.
MAX_START_FAILURES = 5
#: On top of twice --shutdown-timeout (connections, then lifespan shutdown),
#: the time a draining worker gets before it is killed.
KILL_GRACE = 5.0

WORKER_SIGNALS_IGNORED = (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
SUPERVISOR_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)


#: The endpoint kinds a supervisor can bind and its workers adopt.
SHAREABLE = ("tcp", "tcp6", "ssl", "unix", "fd")


def _is_fd(description: str) -> bool:
    return description.partition(":")[0].strip().lower() == "fd"


def _in_filesystem(path: str) -> bool:
    """Whether a UNIX socket address is a path (not abstract, not unnamed)."""
    return bool(path) and not path.startswith("\0")


def _family(interface: str) -> socket.AddressFamily:
    """The family of a tcp: or ssl: endpoint's socket, as Twisted picks it."""
    return socket.AF_INET6 if ":" in interface else socket.AF_INET


# -- the supervisor's side: bind without a reactor --------------------------


class _StandIn:
    """Stands in for the reactor while an endpoint listens; ``ssl:`` is
    ``tcp:`` with the factory wrapped (:meth:`tls`)."""

    def listenTCP(  # noqa: N802 (Twisted's name)
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        raise NotImplementedError

    def listenSSL(  # noqa: N802 (Twisted's name)
        self,
        port: int,
        factory: Any,
        contextFactory: Any,  # noqa: N803
        backlog: int = 50,
        interface: str = "",
    ) -> Any:
        return self.listenTCP(
            port, self.tls(factory, contextFactory), backlog, interface
        )

    def tls(self, factory: Any, context_factory: Any) -> Any:
        return factory


class _Binder(_StandIn):
    """Binds a plain socket instead of listening, so every endpoint kind
    parses exactly as it does in a worker. An ``ssl:`` socket is shared as
    it is: each worker wraps its own connections."""

    def __init__(self, description: str) -> None:
        self.description = description
        #: The UNIX socket path bound, if any.
        self.owned: Owned | None = None

    def listenTCP(  # noqa: N802 (Twisted's name)
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> socket.socket:
        sock = socket.socket(_family(interface), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((interface, port))
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            raise ServerError(
                f"Cannot listen on {self.description}: {exc.strerror or exc}"
            ) from None
        return sock

    def listenUNIX(  # noqa: N802 (Twisted's name)
        self,
        address: str,
        factory: Any,
        backlog: int = 50,
        mode: int = 0o666,
        wantPID: bool = False,  # noqa: N803
    ) -> socket.socket:
        lock = None
        if wantPID:  # lockfile=1: as Twisted does, a stale path goes first
            lock = FilesystemLock(address + ".lock")
            if not lock.lock():
                raise ServerError(
                    f"Cannot listen on {self.description}: {address}.lock is "
                    "held by another process"
                )
            if not lock.clean:
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(os.stat(address).st_mode):
                        os.unlink(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(address)
            if _in_filesystem(address):
                os.chmod(address, mode)
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            if lock is not None:
                lock.unlock()
            raise ServerError(
                f"Cannot listen on {self.description}: {exc.strerror or exc}"
            ) from None
        self.owned = Owned(address, lock)
        return sock

    def adoptStreamPort(  # noqa: N802 (Twisted's name)
        self,
        fileDescriptor: int,  # noqa: N803
        addressFamily: socket.AddressFamily,  # noqa: N803
        factory: Any,
    ) -> socket.socket:
        # The endpoint closes the descriptor it was given once adopted.
        return socket.socket(fileno=os.dup(fileDescriptor))


@dataclass
class Owned:
    """A UNIX socket path the supervisor bound, and its lock file if any:
    removed when the supervisor exits (the workers leave them alone)."""

    path: str
    lock: FilesystemLock | None = None

    def remove(self) -> None:
        if _in_filesystem(self.path):
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.stat(self.path).st_mode):
                    os.unlink(self.path)
        if self.lock is not None:
            self.lock.unlock()


def bind_endpoints(
    descriptions: list[str], owned: list[Owned] | None = None
) -> list[socket.socket]:
    """A listening, non-blocking socket for each endpoint description.

    The UNIX socket paths bound here are appended to ``owned``, for the
    caller to remove. Raises ConfigError for an endpoint that cannot be
    shared, ServerError for one that cannot be bound. No reactor is
    imported."""
    sockets: list[socket.socket] = []
    bound: list[Owned] = []
    try:
        for description in descriptions:
            kind = description.partition(":")[0].strip().lower()
            if kind not in SHAREABLE:
                raise ConfigError(
                    f"--workers cannot share the endpoint {description!r} "
                    f"(it can share {', '.join(SHAREABLE)} endpoints)"
                )
            binder = _Binder(description)
            try:
                endpoint = server_endpoint(binder, description)
            except EndpointError as exc:
                raise ConfigError(str(exc)) from None
            outcome: list[Any] = []
            endpoint.listen(None).addBoth(outcome.append)
            if isinstance(outcome[0], Failure):
                outcome[0].raiseException()
            sock = outcome[0]
            sockets.append(sock)
            if binder.owned is not None:
                bound.append(binder.owned)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        for path in bound:
            path.remove()
        raise
    if owned is not None:
        owned.extend(bound)
    return sockets


def describe_address(sock: socket.socket) -> str:
    """Where a listening socket is, for the log."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        return name if _in_filesystem(name) else "an unnamed UNIX socket"
    host, port = name[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the worker's side --------------------------------------------------------


class _Adopter(_StandIn):
    """Adopts the inherited socket instead of binding a new one, as a port
    shared with the other workers (:mod:`daphne.shared_ports`)."""

    def __init__(self, reactor: Any, fileno: int) -> None:
        self.reactor = reactor
        self.fileno = fileno

    def _adopt(self, family: socket.AddressFamily, factory: Any) -> Any:
        listening = adopt(self.reactor, self.fileno, family, factory)
        os.close(self.fileno)  # the port made a copy
        return listening

    def listenTCP(  # noqa: N802 (Twisted's name)
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        return self._adopt(_family(interface), factory)

    def listenUNIX(  # noqa: N802 (Twisted's name)
        self,
        address: str,
        factory: Any,
        backlog: int = 50,
        mode: int = 0o666,
        wantPID: bool = False,  # noqa: N803
    ) -> Any:
        # The supervisor bound it, set its mode and holds its lock file.
        return self._adopt(socket.AF_UNIX, factory)

    def tls(self, factory: Any, context_factory: Any) -> Any:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return TLSMemoryBIOFactory(context_factory, False, factory)


@dataclass
class WorkerLink:
    """A worker's ties to its supervisor: the inherited sockets, in the order
    of the sorted endpoint descriptions, and the control socket."""

    sockets: list[int]
    control_fd: int

    @classmethod
    def from_options(cls, options: Any) -> WorkerLink | None:
        """The link from the internal options, or None outside a worker."""
        if options.worker_sockets is None:
            return None
        return cls(
            [int(fd) for fd in options.worker_sockets.split(",")],
            options.worker_control_fd,
        )

    def endpoint_factory(self, descriptions: list[str]) -> Callable[[Any, str], Any]:
        """``(reactor, description) -> endpoint`` on the inherited sockets."""
        fds = dict(zip(descriptions, self.sockets, strict=True))

        def endpoint(reactor: Any, description: str) -> Any:
            fileno = fds[description]
            if _is_fd(description):
                return fd_endpoint(AdoptShared(reactor), str(fileno))
            return server_endpoint(_Adopter(reactor, fileno), description)

        return endpoint

    def install_signal_handlers(self, stop: Callable[[], None]) -> None:
        """SIGTERM drains (``stop`` is called from the reactor); the signals
        meant for the supervisor are ignored."""
        from twisted.internet import reactor

        def drain(signum: int, frame: Any) -> None:
            # Once is enough: from here on only the supervisor's SIGKILL
            # ends the drain early (a process manager may send SIGTERM to
            # the supervisor and the workers alike).
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            reactor.callFromThread(stop)

        for signum in WORKER_SIGNALS_IGNORED:
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, drain)

    def ready(self, stop: Callable[[], None]) -> Callable[[], None]:
        """The Server's ready_callable: tell the supervisor, then stop
        gracefully if the supervisor goes away."""

        def ready() -> None:
            import asyncio

            def supervisor_gone() -> None:
                loop.remove_reader(control)
                logger.warning("The supervisor has gone; stopping")
                stop()

            loop = asyncio.get_running_loop()
            control = socket.socket(fileno=self.control_fd)
            try:
                control.sendall(b"R")
            except OSError:
                supervisor_gone()
                return
            loop.add_reader(control, supervisor_gone)

        return ready


def check_layer(application: Any, workers: int, share_nothing: bool) -> None:
    """Refuse daphne's in-memory layer with several workers unless told to."""
    if workers <= 1 or not isinstance(application, InMemoryChannelLayer):
        return
    if not share_nothing:
        raise ConfigError(
            f"--workers {workers} with daphne's in-memory channel layer would "
            "give each worker process a layer of its own: a message sent in one "
            "(a group send, a reply) never reaches the others. Use a layer that "
            "spans processes (asgi_redis), --workers 1, or "
            "--workers-share-nothing if the workers need not talk to each other"
        )
    logger.warning(
        "--workers-share-nothing: this worker has an in-memory channel layer "
        "of its own, shared with no other worker"
    )


# -- the supervisor -------------------------------------------------------------


@dataclass(eq=False)
class WorkerProcess:
    """One worker as the supervisor sees it."""

    proc: subprocess.Popen
    control: socket.socket
    ready_at: float | None = None
    #: Sent SIGTERM: it finishes what it has and exits; not restarted.
    draining: bool = False
    #: To be drained as soon as the worker replacing it (SIGHUP) is ready.
    retiring: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def drain(self) -> None:
        self.draining = True
        self.retiring = False
        self.signal(signal.SIGTERM)

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Supervisor:
    """Binds ``endpoints`` once and keeps ``workers`` worker processes
    serving them; :meth:`run` returns the exit status."""

    def __init__(
        self,
        args: list[str],
        endpoints: list[str],
        workers: int,
        shutdown_timeout: float,
    ) -> None:
        self.args = args
        self.endpoints = endpoints
        self.count = workers
        self.shutdown_timeout = shutdown_timeout
        self.workers: list[WorkerProcess] = []
        self.sockets: list[socket.socket] = []
        #: The UNIX socket paths bound, removed on exit.
        self.owned: list[Owned] = []
        self.selector = selectors.DefaultSelector()
        self.ever_ready = False
        #: Consecutive workers that exited before they were ready.
        self.start_failures = 0
        #: Consecutive workers that exited soon after starting (the backoff).
        self.quick_exits = 0
        #: No worker is started before this (monotonic) time.
        self.hold_until = 0.0
        #: Old workers still to be replaced in a SIGHUP reload.
        self.reload_queue: list[WorkerProcess] = []
        self.reloading = False
        self.status: int | None = None  # set once stopping
        self.kill_at: float | None = None

    # -- running ------------------------------------------------------------------

    def run(self) -> int:
        self.sockets = bind_endpoints(self.endpoints, self.owned)
        for description, sock in zip(self.endpoints, self.sockets, strict=True):
            where = describe_address(sock)
            logger.info("Supervisor bound %s at %s", description, where)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self.selector.register(wake_r, selectors.EVENT_READ)
        previous = {
            signum: signal.signal(signum, lambda *_: None)
            for signum in SUPERVISOR_SIGNALS
        }
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        logger.info(
            "Supervisor %d starting %d workers (SIGHUP: replace them, "
            "SIGTTIN/SIGTTOU: one more/fewer, SIGTERM: stop)",
            os.getpid(),
            self.count,
        )
        try:
            return self._loop(wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for worker in self.workers:
                worker.signal(signal.SIGKILL)
                worker.proc.wait()
            for sock in (*self.sockets, wake_r, wake_w):
                sock.close()
            for path in self.owned:
                path.remove()
            self.selector.close()

    def _loop(self, wake: socket.socket) -> int:
        while True:
            self._reconcile()
            if self.status is not None and not self.workers:
                logger.info("Supervisor exiting (%s)", describe_exit(self.status))
                return self.status
            for key, _ in self.selector.select(self._timeout()):
                if key.fileobj is wake:
                    self._signals(wake.recv(64))
                else:
                    self._control(key.data)
            self._reap()
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                logger.warning(
                    "Killing %d worker(s) that did not stop in time", len(self.workers)
                )
                for worker in self.workers:
                    worker.signal(signal.SIGKILL)
                self.kill_at = None

    def _timeout(self) -> float:
        now = time.monotonic()
        waits = [1.0]
        if self.kill_at is not None:
            waits.append(self.kill_at - now)
        if self.hold_until > now:
            waits.append(self.hold_until - now)
        return max(0.0, min(waits))

    # -- events ---------------------------------------------------------------------

    def _signals(self, received: bytes) -> None:
        for signum in received:
            if signum in (signal.SIGINT, signal.SIGTERM):
                self._stop(signal.Signals(signum).name)
            elif self.status is not None:
                continue  # stopping: nothing else matters
            elif signum == signal.SIGHUP:
                self.reload_queue = self._serving()
                self.reloading = True
                logger.info(
                    "SIGHUP: replacing %d worker(s) one by one", len(self.reload_queue)
                )
            elif signum == signal.SIGTTIN:
                self.count += 1
                logger.info("SIGTTIN: %d workers", self.count)
            elif signum == signal.SIGTTOU:
                if self.count > 1:
                    self.count -= 1
                logger.info("SIGTTOU: %d worker(s)", self.count)

    def _stop(self, reason: str | None, status: int = 0) -> None:
        if self.status is not None:
            if reason in ("SIGINT", "SIGTERM"):
                logger.warning("Second %s: killing the workers", reason)
                self.status = 1
                for worker in self.workers:
                    worker.signal(signal.SIGKILL)
            return
        self.status = status
        self.kill_at = time.monotonic() + 2 * self.shutdown_timeout + KILL_GRACE
        if reason is not None:
            logger.info(
                "%s: draining %d worker(s) within %ss",
                reason,
                len(self.workers),
                self.shutdown_timeout,
            )
        for worker in self.workers:
            worker.drain()

    def _control(self, worker: WorkerProcess) -> None:
        try:
            data = worker.control.recv(16)
        except OSError:
            data = b""
        if not data:  # the worker has gone; _reap tells why
            self.selector.unregister(worker.control)
            return
        if worker.ready_at is not None:
            return
        worker.ready_at = time.monotonic()
        self.ever_ready = True
        self.start_failures = 0
        logger.info("Worker %d ready", worker.pid)
        if self.status is not None:
            worker.drain()
            return
        for old in self.workers:
            if old.retiring:
                logger.info("Draining worker %d (replaced)", old.pid)
                old.drain()
                break

    def _reap(self) -> None:
        for worker in list(self.workers):
            code = worker.proc.poll()
            if code is None:
                continue
            self.workers.remove(worker)
            with contextlib.suppress(KeyError):  # (unless it read end of file)
                self.selector.unregister(worker.control)
            worker.control.close()
            if worker.draining or self.status is not None:
                logger.info("Worker %d exited (%s)", worker.pid, describe_exit(code))
            else:
                self._unexpected_exit(worker, code)

    def _unexpected_exit(self, worker: WorkerProcess, code: int) -> None:
        now = time.monotonic()
        if worker.ready_at is None:
            if self._start_failed(worker, code):
                return
        elif code == 0:  # it retired of its own accord
            logger.info("Worker %d exited (exit status 0); replacing it", worker.pid)
        else:
            logger.warning(
                "Worker %d died (%s); restarting it", worker.pid, describe_exit(code)
            )
        if worker.ready_at is None or now - worker.ready_at < MIN_UPTIME:
            self.quick_exits += 1
            delay = min(
                FIRST_RESTART_DELAY * 2 ** (self.quick_exits - 1), MAX_RESTART_DELAY
            )
            self.hold_until = now + delay
            logger.info("Next worker start in %.1fs", delay)
        else:
            self.quick_exits = 0

    def _start_failed(self, worker: WorkerProcess, code: int) -> bool:
        """A worker exited before it was ready; True if it is not to be
        replaced (a reload abandoned, or the supervisor giving up)."""
        self.start_failures += 1
        how = describe_exit(code)
        if any(w.retiring for w in self.workers):
            logger.error(
                "Worker %d could not start (%s): reload abandoned, the old "
                "workers keep serving",
                worker.pid,
                how,
            )
            for old in self.workers:
                old.retiring = False
            self.reload_queue = []
            self.reloading = False
            return True
        serving = any(w.ready_at is not None for w in self.workers)
        if not serving and (
            not self.ever_ready or self.start_failures >= MAX_START_FAILURES
        ):
            logger.error("Worker %d could not start (%s); stopping", worker.pid, how)
            self._stop(None, status=1)
            return True
        logger.error("Worker %d could not start (%s)", worker.pid, how)
        return False

    # -- keeping the count -----------------------------------------------------------

    def _serving(self) -> list[WorkerProcess]:
        return [w for w in self.workers if not w.draining and not w.retiring]

    def _reconcile(self) -> None:
        if self.status is not None:
            return
        if self.reload_queue and not any(w.retiring for w in self.workers):
            old = self.reload_queue.pop(0)
            if old in self.workers and not old.draining:
                old.retiring = True
        reloaded = not self.reload_queue and not any(w.retiring for w in self.workers)
        if self.reloading and reloaded:
            self.reloading = False
            logger.info("Reload complete")
        serving = self._serving()
        if not self.ever_ready:
            # The first worker starts alone: if the application cannot
            # start, one worker says why, once.
            missing = 0 if self.workers else 1
        else:
            missing = self.count - len(serving)
        if missing > 0 and time.monotonic() >= self.hold_until:
            for _ in range(missing):
                self._spawn()
        elif missing < 0:
            for worker in serving[missing:]:
                logger.info("Removing worker %d", worker.pid)
                worker.drain()

    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        fds = [sock.fileno() for sock in self.sockets]
        command = [
            sys.executable,
            "-m",
            "daphne",
            "--worker-sockets",
            ",".join(map(str, fds)),
            "--worker-control-fd",
            str(child.fileno()),
            *self.args,
        ]
        try:
            proc = subprocess.Popen(
                command, pass_fds=(*fds, child.fileno()), stdin=subprocess.DEVNULL
            )
        finally:
            child.close()
        worker = WorkerProcess(proc, parent)
        self.workers.append(worker)
        self.selector.register(parent, selectors.EVENT_READ, worker)
        logger.info("Started worker %d", proc.pid)

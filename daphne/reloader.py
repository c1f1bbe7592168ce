"""``daphne --reload``: serve from a child process, restarted on file changes.

The process the user started is the reloader. It never installs a reactor
or imports the application: it starts ``python -m daphne`` with the same
arguments in a child process (marked by :data:`CHILD_ENV`, so that the child
serves instead of reloading), watches directories with ``watchfiles``, and
on a change to a watched file stops the child (SIGTERM, the server's
graceful shutdown; SIGKILL if it outlives its grace period) and starts a new
one. SIGINT, SIGTERM or SIGHUP stop the child the same way, and the reloader
exits 0.

The child runs in a session of its own, so that a Ctrl-C in the terminal
reaches only the reloader, and the child gets one signal, not two (a second
signal makes the server leave at once).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from .config import RELOAD_EXCLUDE, RELOAD_INCLUDE, RELOAD_KILL_AFTER

__all__ = ["CHILD_ENV", "ChangeFilter", "ReloadError", "Reloader", "check_options"]

logger = logging.getLogger(__name__)

#: Set in the environment of the server the reloader starts.
CHILD_ENV = "DAPHNE_RELOADER_CHILD"

#: How long (ms) the watcher waits for changes before it reports "none": the
#: server starts after the first such report, and a server that exited by
#: itself is noticed within this time.
WATCH_TICK_MS = 250


class ReloadError(ValueError):
    """The reload options cannot work; the message names the option."""


def is_child() -> bool:
    """Whether this process is a server started by the reloader; the marker
    is removed, so that the application's own subprocesses do not see it."""
    return os.environ.pop(CHILD_ENV, None) == "1"


def check_options(options: argparse.Namespace, *, watching: bool) -> None:
    """Refuse reload options that cannot work; ``watching``: this process
    is to be the reloader (so watchfiles must be importable)."""
    for name, given in (
        ("--reload-dir", options.reload_dirs),
        ("--reload-include", options.reload_includes),
        ("--reload-exclude", options.reload_excludes),
    ):
        if given and not options.reload:
            raise ReloadError(f"{name} needs --reload")
    if not options.reload:
        return
    # --workers is a production option: with more than one, the reloader
    # would be running in production by accident.
    if getattr(options, "workers", 1) > 1:
        raise ReloadError("--reload cannot be used with --workers above 1")
    if not watching:
        return
    for directory in options.reload_dirs:
        if not os.path.isdir(directory):
            raise ReloadError(f"--reload-dir {directory} is not a directory")
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ReloadError(
            "--reload needs the watchfiles package: pip install 'daphne[reload]'"
        ) from None


class ChangeFilter:
    """Which changed paths restart the server.

    A path counts when its file name matches an include glob, and neither
    its name nor the name of a directory between the watched directory and
    it matches an exclude glob. Files inside this interpreter's virtualenv
    never count.
    """

    def __init__(
        self,
        directories: Iterable[Path],
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> None:
        self.directories = [Path(directory).resolve() for directory in directories]
        self.include = (*RELOAD_INCLUDE, *include)
        self.exclude = (*RELOAD_EXCLUDE, *exclude)
        self.ignored = []
        if sys.prefix != sys.base_prefix:
            self.ignored.append(Path(sys.prefix).resolve())

    def __call__(self, change: Any, path: str) -> bool:
        """The ``watch_filter`` of :func:`watchfiles.watch`."""
        return self.matches(Path(path))

    def matches(self, path: Path) -> bool:
        if any(path.is_relative_to(ignored) for ignored in self.ignored):
            return False
        # Only the names below the watched directory: the directory itself
        # may well sit under a hidden one.
        parts = path.parts[-1:]
        for directory in self.directories:
            if path.is_relative_to(directory):
                parts = path.relative_to(directory).parts
                break
        if any(fnmatch(part, glob) for part in parts for glob in self.exclude):
            return False
        return any(fnmatch(path.name, glob) for glob in self.include)


class Reloader:
    """Runs ``command`` as a child process and restarts it on changes."""

    def __init__(
        self,
        command: Sequence[str],
        directories: Sequence[Path],
        change_filter: ChangeFilter,
        grace: float,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.command = list(command)
        self.directories = list(directories)
        self.change_filter = change_filter
        #: Seconds a child may take to stop before it is killed.
        self.grace = grace
        self.pass_fds = tuple(pass_fds)
        self.child: subprocess.Popen | None = None
        self.stopping = threading.Event()

    @classmethod
    def from_options(
        cls,
        options: argparse.Namespace,
        args: Sequence[str],
        shutdown_timeout: float,
        extra_args: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> Reloader:
        """The reloader for ``daphne ARGS`` (``extra_args`` appended for the
        child)."""
        directories = [Path(d) for d in options.reload_dirs] or [Path.cwd()]
        return cls(
            [sys.executable, "-m", "daphne", *args, *extra_args],
            directories,
            ChangeFilter(directories, options.reload_includes, options.reload_excludes),
            grace=shutdown_timeout + RELOAD_KILL_AFTER,
            pass_fds=pass_fds,
        )

    def run(self) -> int:
        """Serve until a signal arrives; the exit status (0)."""
        import watchfiles

        # (watchfiles logs every batch at INFO; restart() says what changed.)
        logging.getLogger("watchfiles").setLevel(logging.WARNING)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        logger.info(
            "Reloader (pid %d) watching %s",
            os.getpid(),
            ", ".join(str(d) for d in self.directories),
        )
        try:
            # yield_on_timeout: an empty set now and then, to notice a
            # server that exited by itself. The first one says the watches
            # are in place: only then does the server start, so a change
            # made as soon as it answers cannot be missed.
            waiting = True
            for changes in watchfiles.watch(
                *self.directories,
                watch_filter=self.change_filter,
                stop_event=self.stopping,
                rust_timeout=WATCH_TICK_MS,
                yield_on_timeout=True,
                raise_interrupt=False,
            ):
                if self.stopping.is_set():
                    break
                if waiting:
                    waiting = False
                    self.start()  # (it reads any change made meanwhile)
                elif changes:
                    self.restart(sorted({path for _, path in changes}))
                else:
                    self.reap()
        finally:
            self.stop()
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping.set()

    def start(self) -> None:
        self.child = subprocess.Popen(
            self.command,
            env={**os.environ, CHILD_ENV: "1"},
            pass_fds=self.pass_fds,
            start_new_session=True,
        )
        logger.info("Started server process %d", self.child.pid)

    def reap(self) -> None:
        """Report a server that exited by itself (once)."""
        if self.child is not None and self.child.poll() is not None:
            logger.warning(
                "Server process %d exited with status %d; waiting for a file "
                "change to start it again",
                self.child.pid,
                self.child.returncode,
            )
            self.child = None

    def restart(self, paths: Sequence[str]) -> None:
        names = ", ".join(_shown(path) for path in paths)
        logger.warning("Changed: %s; restarting the server", names)
        self.stop()
        self.start()

    def stop(self) -> None:
        """Stop the server gracefully; kill it after the grace period."""
        child, self.child = self.child, None
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(self.grace)
        except subprocess.TimeoutExpired:
            logger.warning(
                "Server process %d still running %gs after SIGTERM; killing it",
                child.pid,
                self.grace,
            )
            child.kill()
            child.wait()


def _shown(path: str) -> str:
    """``path`` relative to the current directory when it is below it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path

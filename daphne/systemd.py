"""systemd socket activation: the listening sockets a service manager passed in.

systemd (and ``systemd-socket-activate``, and any manager that speaks the same
protocol) starts daphne with the sockets already open as file descriptors 3,
4, ... and says so in three environment variables: ``LISTEN_FDS`` (how many),
``LISTEN_PID`` (which process they are for) and, optionally,
``LISTEN_FDNAMES`` (colon-separated names). :func:`listen_fds` reads them the
way ``sd_listen_fds(unset_environment=1)`` does; see sd_listen_fds(3).

Importing ``twisted.internet.endpoints`` takes ``LISTEN_PID`` and
``LISTEN_FDS`` out of the environment (Twisted reads them for its
``systemd:`` endpoints), so the ``daphne`` command reads
:data:`VARIABLES` before it imports anything of Twisted's (see
:mod:`daphne.__main__`) and hands them to :func:`listen_fds`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "LISTEN_FDS_START",
    "VARIABLES",
    "ActivationError",
    "ListenFD",
    "listen_fds",
]

#: The first file descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3

#: The environment variables of the protocol.
VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class ActivationError(ValueError):
    """The activation variables name this process but make no sense."""


@dataclass(frozen=True)
class ListenFD:
    """One passed socket: its file descriptor and its name (``FileDescriptorName=``
    of the ``.socket`` unit; systemd's ``unknown`` when none was given)."""

    fileno: int
    name: str

    @property
    def description(self) -> str:
        """The endpoint description daphne serves it with."""
        return f"fd:fileno={self.fileno}"


def listen_fds(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> list[ListenFD]:
    """The sockets passed to process ``pid`` (this one by default), as
    ``environ`` (by default the process environment) says.

    Empty when ``LISTEN_PID`` is unset or names another process (the
    variables were inherited from a parent they were meant for). When they
    name this process, the variables are removed from the process
    environment, so that child processes cannot take the sockets for their
    own, and the descriptors are made close-on-exec.
    Raises :class:`ActivationError` for values that are not numbers.
    """
    environ = os.environ if environ is None else environ
    pid = os.getpid() if pid is None else pid
    listen_pid = environ.get("LISTEN_PID", "").strip()
    if not listen_pid or listen_pid != str(pid):
        return []
    values = {name: environ.get(name) for name in VARIABLES}
    for name in VARIABLES:
        os.environ.pop(name, None)
    count = (values["LISTEN_FDS"] or "").strip()
    if not count.isascii() or not count.isdigit():
        raise ActivationError(
            f"LISTEN_FDS must be a number of file descriptors, got {count!r}"
        )
    total = int(count)
    names = values["LISTEN_FDNAMES"]
    labels = names.split(":") if names else []
    if len(labels) != total:
        # systemd sets one name per descriptor; anything else is not its.
        labels = []
    passed = []
    for index in range(total):
        fileno = LISTEN_FDS_START + index
        try:
            os.set_inheritable(fileno, False)
        except OSError as exc:
            # (Checked one by one: a wrong count fails at once, not after
            # building a list that long.)
            raise ActivationError(
                f"LISTEN_FDS={count}, but file descriptor {fileno} is not "
                f"open ({exc.strerror})"
            ) from None
        passed.append(ListenFD(fileno, labels[index] if labels else "unknown"))
    return passed

"""An ASGI v1 channel layer in memory, shared by the threads of one process.

Daphne sends to it from the reactor thread while workers receive from other
threads (``receive(..., block=True)``), and the other way round for replies.
Nobody polls: a blocking receive sleeps on its own event, and
``receive_twisted`` (the ``twisted`` extension, which daphne's reply reader
uses) is woken through the reactor's ``callFromThread`` the moment a worker
sends.

Messages are copied on send (checking that they hold only what a layer that
serialises them could carry), so a sender that changes a message afterwards
cannot change what is received; ``send_owned`` skips both for a sender that
builds each message for the layer alone (daphne does). ``receive_batch``
takes many queued messages for the price of one ``receive``. Each queue is bounded (``capacity``, with
``channel_capacity`` globs overriding it), messages expire after ``expiry``
seconds and group memberships after ``group_expiry`` seconds.
"""

from __future__ import annotations

import contextlib
import fnmatch
import random
import re
import string
import threading
import time
from asyncio import _get_running_loop
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from threading import get_ident
from typing import Any

from .base import (
    MAX_NAME_LENGTH,
    ChannelFull,
    MessageTooLarge,
    check_channel_name,
    check_group_name,
    non_local_name,
)

MiB = 1024 * 1024

#: Size counted for every value that is not text or bytes, and for every
#: container item, so that a message of many tiny items is not free.
ITEM_SIZE = 8

#: (expiry time, full channel name, message)
Item = tuple[float, str, dict]

_SCALARS = (int, float, bool, type(None))
_TEXT = (str, bytes)


def copy_message(message: Any) -> tuple[dict, int]:
    """A copy of ``message`` safe to hand to another thread, and its size.

    Only what a serialising layer could carry is accepted: dicts with text
    keys, lists, tuples, text, bytes, numbers, booleans and ``None``."""
    if type(message) is not dict:
        raise TypeError(f"A message must be a dict, not {type(message).__name__}")
    return _copy(message)


def _copy(value: Any) -> tuple[Any, int]:
    # (Text, bytes and scalars are immutable: shared, not copied. The loops
    # handle them inline; this runs for every message.)
    kind = type(value)
    if kind is str or kind is bytes:
        return value, len(value) + ITEM_SIZE
    if kind in _SCALARS:
        return value, ITEM_SIZE
    if kind is dict:
        out = {}
        size = ITEM_SIZE
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"Message keys must be text, not {key!r}")
            kind = type(item)
            if kind is str or kind is bytes:
                size += len(item) + len(key) + ITEM_SIZE
            elif kind in _SCALARS:
                size += len(key) + ITEM_SIZE
            else:
                item, item_size = _copy(item)
                size += item_size + len(key)
            out[key] = item
        return out, size
    if kind is list or kind is tuple:
        items = []
        size = ITEM_SIZE
        shared = True  # (a tuple of immutable items is itself immutable)
        for item in value:
            kind_ = type(item)
            if kind_ is str or kind_ is bytes:
                size += len(item) + ITEM_SIZE
            elif kind_ in _SCALARS:
                size += ITEM_SIZE
            elif (
                (kind_ is tuple or kind_ is list)
                and len(item) == 2
                and type(item[0]) in _TEXT
                and type(item[1]) in _TEXT
            ):
                # A header: a pair of text or bytes (the commonest list item).
                size += len(item[0]) + len(item[1]) + 3 * ITEM_SIZE
                if kind_ is list:
                    item = [item[0], item[1]]
                    shared = False
            else:
                item, item_size = _copy(item)
                size += item_size
                shared = False
            items.append(item)
        if kind is list:
            return items, size
        return (value if shared else tuple(items)), size
    # Subclasses (e.g. an IntEnum, a str subclass) travel as their base type.
    for base in (str, bytes, bool, int, float):
        if isinstance(value, base):
            return _copy(base(value))
    raise TypeError(f"Messages cannot carry {kind.__name__} values ({value!r})")


class _Waiter:
    """A receiver waiting for a message on some queues."""

    __slots__ = ("wake", "names")

    def __init__(self, wake: Callable[[], None], names: list[str]) -> None:
        #: Called, under the layer's lock, when a message may be available.
        self.wake = wake
        self.names = names


class InMemoryChannelLayer:
    """The ASGI v1 channel layer interface, in memory and thread-safe."""

    ChannelFull = ChannelFull
    MessageTooLarge = MessageTooLarge
    extensions = ["groups", "flush", "twisted"]

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[str, int] | None = None,
        max_message_size: int = 16 * MiB,
        blocking_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity = capacity
        self.channel_capacity = [
            (re.compile(fnmatch.translate(pattern)), value)
            for pattern, value in (channel_capacity or {}).items()
        ]
        self.max_message_size = max_message_size
        self.blocking_timeout = blocking_timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Item]] = {}
        self._capacities: dict[str, int] = {}
        self._waiters: dict[str, list[_Waiter]] = {}
        #: thread id -> the event loop that last ran receive_twisted there.
        self._reader_loops: dict[int, Any] = {}
        #: Channel lists already checked for receive().
        self._checked: dict[tuple, list[str]] = {}
        #: Names already checked for send() (see _queue_name).
        self._send_names: dict[str, str] = {}
        self._send_prefixes: dict[str, str] = {}
        #: thread id -> (its reader loop, queues sent to from that loop whose
        #: waiters are yet to be woken, after the loop's current callbacks).
        self._pending_wakes: dict[int, tuple[Any, set[str]]] = {}
        #: group -> {channel: membership expiry time}
        self._groups: dict[str, dict[str, float]] = {}
        self._random = random.SystemRandom()

    # -- the core interface --------------------------------------------------

    def send(self, channel: str, message: dict) -> None:
        """Queue ``message``; ``ChannelFull`` if the channel is at capacity."""
        queue_name = self._queue_name(channel)
        self._put(queue_name, channel, self._copy(message))

    def send_owned(self, channel: str, message: dict, size: int) -> None:
        """:meth:`send` for a message its sender built for the layer alone.

        The sender promises that ``message`` holds only what :meth:`send`
        accepts, that nothing else refers to its lists and dicts, and that it
        never touches it again; so it is queued as it is, neither checked nor
        copied. ``size`` is the sender's estimate of its size, held against
        ``max_message_size``. (daphne's own messages, which it builds afresh
        for every send, go this way: copying them cost more than the rest of
        a send.)"""
        queue_name = self._queue_name(channel)
        if size > self.max_message_size:
            raise MessageTooLarge(
                f"Message of about {size} bytes is larger than {self.max_message_size}"
            )
        self._put(queue_name, channel, message)

    def _put(self, queue_name: str, channel: str, message: dict) -> None:
        with self._lock:
            now = self.clock()
            queue = self._queues.get(queue_name)
            if queue is None:
                queue = self._queues[queue_name] = deque()
            elif queue and queue[0][0] <= now:
                _drop_expired(queue, now)
            capacity = self._capacities.get(queue_name) or self._capacity(queue_name)
            if len(queue) >= capacity:
                raise ChannelFull(f"Channel {channel} is full")
            queue.append((now + self.expiry, channel, message))
            if queue_name in self._waiters:
                self._wake_soon(queue_name)

    def receive(
        self, channels: Iterable[str], block: bool = False
    ) -> tuple[str, dict] | tuple[None, None]:
        """The oldest message on any of ``channels``, or ``(None, None)``.

        With ``block``, wait up to ``blocking_timeout`` seconds for one."""
        names = self._receive_names(channels)
        with self._lock:
            item = self._pop(names)
        if item is not None:
            return item[1], item[2]
        if not block:
            return None, None
        # A lock held until a sender releases it: the cheapest way to wake
        # one thread (a threading.Event adds a Condition and its own lock).
        signal = threading.Lock()
        signal.acquire()
        waiter = _Waiter(signal.release, names)
        deadline = time.monotonic() + self.blocking_timeout
        while True:
            with self._lock:
                item = self._pop(names)
                if item is not None:
                    return item[1], item[2]
                self._register(waiter)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not signal.acquire(timeout=remaining):
                with self._lock:
                    self._unregister(waiter)
                    item = self._pop(names)
                return (item[1], item[2]) if item is not None else (None, None)

    def receive_twisted(self, channels: Iterable[str]) -> Any:
        """A Deferred firing with ``(channel, message)`` once one is available.

        The ``twisted`` extension: a send from any thread wakes the reactor
        through ``callFromThread``, so the caller never polls."""
        defer, reactor = _twisted()
        names = self._receive_names(channels)
        with self._lock:
            item = self._pop(names)
        if item is not None:  # (the common case under load: no waiting)
            return defer.succeed((item[1], item[2]))
        result: defer.Deferred = defer.Deferred()

        def attempt() -> None:
            with self._lock:
                item = self._pop(names)
                if item is None:
                    self._register(waiter)
                    return
            result.callback((item[1], item[2]))

        # Woken under the lock, in the sender's thread. On the asyncio
        # reactor, straight through its loop: Twisted's callFromThread adds
        # a timed call and a second loop turn.
        loop = _get_running_loop()
        if loop is not None:
            self._reader_loops[get_ident()] = loop
            waiter = _Waiter(lambda: loop.call_soon_threadsafe(attempt), names)
        else:
            waiter = _Waiter(lambda: reactor.callFromThread(attempt), names)
        attempt()
        return result

    def receive_batch(
        self, channels: Iterable[str], limit: int
    ) -> list[tuple[str, dict]]:
        """Up to ``limit`` messages from ``channels``, oldest first, without
        waiting: ``limit`` non-blocking :meth:`receive` calls for the price
        of one (daphne's reply reader drains its replies with it)."""
        names = self._receive_names(channels)
        batch: list[tuple[str, dict]] = []
        with self._lock:
            if len(names) == 1:
                name = names[0]
                queue = self._queues.get(name)
                if not queue:
                    return batch
                now = self.clock()
                if queue[0][0] <= now:
                    _drop_expired(queue, now)
                popleft = queue.popleft
                for _ in range(min(limit, len(queue))):
                    item = popleft()
                    batch.append((item[1], item[2]))
                if queue:
                    waiters = self._waiters.get(name)
                    if waiters:
                        self._wake(waiters[0])
                elif len(self._queues) > 1000:
                    del self._queues[name]
                return batch
            while len(batch) < limit:
                item = self._pop(names)
                if item is None:
                    break
                batch.append((item[1], item[2]))
        return batch

    def new_channel(self, pattern: str) -> str:
        """A fresh channel name: ``pattern`` (ending in ``?``) made unique."""
        if type(pattern) is not str or not pattern.endswith("?"):
            raise TypeError(f"A new_channel pattern must end with '?', not {pattern!r}")
        prefix = pattern[:-1]
        # (The whole name must be valid: a long pattern leaves no room.)
        check_channel_name(prefix + "x" * 12)
        while True:
            name = prefix + "".join(self._random.choices(string.ascii_letters, k=12))
            if name not in self._queues:
                return name

    # -- groups and flush ------------------------------------------------------

    def group_add(self, group: str, channel: str) -> None:
        check_group_name(group)
        check_channel_name(channel)
        with self._lock:
            members = self._groups.setdefault(group, {})
            members[channel] = self.clock() + self.group_expiry

    def group_discard(self, group: str, channel: str) -> None:
        check_group_name(group)
        check_channel_name(channel)
        with self._lock:
            members = self._groups.get(group)
            if members is not None:
                members.pop(channel, None)
                if not members:
                    del self._groups[group]

    def group_channels(self, group: str) -> list[str]:
        """The group's current members."""
        check_group_name(group)
        with self._lock:
            return self._members(group)

    def send_group(self, group: str, message: dict) -> None:
        """Send to every member; members whose channel is full are skipped."""
        check_group_name(group)
        copied = self._copy(message)
        with self._lock:
            members = self._members(group)
        for channel in members:
            # (One copy per member: receivers may change what they get.)
            with contextlib.suppress(ChannelFull):
                self._put(non_local_name(channel), channel, _copy(copied)[0])

    def flush(self) -> None:
        """Drop every message and every group."""
        with self._lock:
            self._queues.clear()
            self._groups.clear()

    # -- internals (callers hold the lock where noted) ---------------------------

    def _queue_name(self, channel: str) -> str:
        """The queue of ``channel``, a name to send to, once checked (and
        remembered: well-known names whole, process-specific ones by prefix,
        a suffix of letters and digits needing no further check)."""
        queue_name = self._send_names.get(channel)
        if queue_name is not None:
            return queue_name
        if type(channel) is str and len(channel) < MAX_NAME_LENGTH:
            bang = channel.find("!")
            if bang >= 0:
                queue_name = channel[: bang + 1]
                suffix = channel[bang + 1 :]
                # (Letters and digits are a subset of the \w the rule allows.)
                if queue_name in self._send_prefixes and suffix.isalnum():
                    return queue_name
        check_channel_name(channel)
        queue_name = non_local_name(channel)
        names = self._send_names if queue_name == channel else self._send_prefixes
        if len(names) > 1000:
            names.clear()  # (names made up on the fly come and go)
        names[queue_name] = queue_name
        return queue_name

    def _receive_names(self, channels: Iterable[str]) -> list[str]:
        if isinstance(channels, str):
            raise TypeError("receive() takes a list of channel names, not a string")
        key = tuple(channels)
        names = self._checked.get(key)
        if names is None:
            # (Receivers ask for the same channels again and again: check once.)
            names = [check_channel_name(name, receive=True) for name in key]
            if not names:
                raise TypeError("receive() needs at least one channel name")
            if len(self._checked) > 1000:
                self._checked.clear()
            self._checked[key] = names
        return names

    def _copy(self, message: dict) -> dict:
        """The message to queue: copied, checked, and within the size limit."""
        copied, size = copy_message(message)
        if size > self.max_message_size:
            raise MessageTooLarge(
                f"Message of about {size} bytes is larger than {self.max_message_size}"
            )
        return copied

    def _capacity(self, queue_name: str) -> int:
        capacity = self._capacities.get(queue_name)
        if capacity is None:
            capacity = self.capacity
            for pattern, value in self.channel_capacity:
                if pattern.match(queue_name):
                    capacity = value
                    break
            if len(self._capacities) > 10_000:
                self._capacities.clear()  # (process-specific names come and go)
            self._capacities[queue_name] = capacity
        return capacity

    def _pop(self, names: list[str]) -> Item | None:
        """The oldest unexpired message on ``names`` (lock held)."""
        now = self.clock()
        best: deque[Item] | None = None
        best_name = ""
        for name in names:
            queue = self._queues.get(name)
            if not queue:
                continue
            if queue[0][0] <= now:
                _drop_expired(queue, now)
                if not queue:
                    continue
            if best is None or queue[0][0] < best[0][0]:
                best, best_name = queue, name
        if best is None:
            return None
        item = best.popleft()
        if best:
            # More is queued: pass the baton to the next waiter on it.
            waiters = self._waiters.get(best_name)
            if waiters:
                self._wake(waiters[0])
        elif len(self._queues) > 1000:
            del self._queues[best_name]  # (keep the table of queues small)
        return item

    def _wake_soon(self, queue_name: str) -> None:
        """Wake a waiter on ``queue_name``, which has a message (lock held):
        at once, or, for a send from the loop of a Twisted receive (daphne's
        reactor, whose loop always turns), once after the loop's current
        callbacks, so that a burst of sends costs one thread switch. (Keyed
        by thread: finding the running loop costs more than a send. A loop
        that stops mid-turn leaves its wake-ups to the thread's next send.)"""
        ident = get_ident()
        pending = self._pending_wakes.get(ident)
        if pending is not None:
            loop, names = pending
            if loop.is_running():
                names.add(queue_name)
                return
            del self._pending_wakes[ident]
            self._wake_names(names)
        else:
            loop = self._reader_loops.get(ident)
            if loop is not None and _get_running_loop() is loop:
                self._pending_wakes[ident] = (loop, {queue_name})
                loop.call_soon(self._wake_pending, ident)
                return
        waiters = self._waiters.get(queue_name)
        if waiters:
            self._wake(waiters[0])

    def _wake_pending(self, ident: int) -> None:
        with self._lock:
            pending = self._pending_wakes.pop(ident, None)
            if pending is not None:
                self._wake_names(pending[1])

    def _wake_names(self, names: Iterable[str]) -> None:
        """Wake a waiter on each of ``names`` that has a message (lock held)."""
        for name in names:
            waiters = self._waiters.get(name)
            queue = self._queues.get(name)
            if waiters and queue:
                self._wake(waiters[0])

    def _register(self, waiter: _Waiter) -> None:
        for name in waiter.names:
            self._waiters.setdefault(name, []).append(waiter)

    def _unregister(self, waiter: _Waiter) -> None:
        for name in waiter.names:
            waiters = self._waiters.get(name)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[name]

    def _wake(self, waiter: _Waiter) -> None:
        # A woken waiter leaves every list, so the next message wakes another.
        self._unregister(waiter)
        waiter.wake()

    def _members(self, group: str) -> list[str]:
        members = self._groups.get(group)
        if not members:
            return []
        now = self.clock()
        expired = [channel for channel, until in members.items() if until <= now]
        for channel in expired:
            del members[channel]
        return list(members)


def _twisted() -> tuple[Any, Any]:
    """Twisted's ``defer`` module and the global reactor, imported once
    needed (the layer itself does not need Twisted)."""
    global _twisted_modules
    if _twisted_modules is None:
        from twisted.internet import defer, reactor

        _twisted_modules = (defer, reactor)
    return _twisted_modules


_twisted_modules: tuple[Any, Any] | None = None


def _drop_expired(queue: deque[Item], now: float) -> None:
    while queue and queue[0][0] <= now:
        queue.popleft()

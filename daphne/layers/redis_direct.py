"""Direct access to a ``channels_redis`` layer's storage: exactly-once
receives, and sends in one round trip.

Why ``RedisChannelLayer.receive`` (channels_redis 4.3) can hand one message to
two processes that receive on the same ordinary channel (``http.request``,
say): to survive its own cancellation, each receive moves the message it pops
(``BZPOPMIN``) into a backup sorted set, ``<channel>$inflight``, and deletes it
from there only once the receive has returned, in a task of its own. Before
popping, *every* receive first runs a script that puts everything in that
backup set back on the channel. The backup set is one per channel, not one
per receiver: while process A holds a message between its pop and the
clean-up, process B's next receive puts A's message back, and B (or A again)
takes it a second time. One receiver per channel never sees this (its own
backup is only restored after its own cancellation); several workers on one
channel, under load, do: a trial with two workers ran 19 to 30 of 250
requests twice.

Process-specific channels (``name!``) have one receiving process and escape
that. Inside the process, though, every coroutine waiting on a channel under
the layer's prefix takes turns at one lock around a ``BZPOPMIN`` on that
prefix, and cancelling a waiting ``receive`` (its connection ended, its
consumer stopped) can cancel the ``BZPOPMIN`` in flight: a message Redis has
popped for it is then lost (seen here as WebSocket frames that never reached
a worker). daphne's reply reader and the worker's own channel therefore use
this receiver too, each from one loop that is never cancelled, on a prefix
nothing else in the process receives on.

:class:`ExactlyOnceReceiver` receives from the same storage without the
backup: one ``BZPOPMIN`` per message, which Redis performs atomically, so a
message goes to exactly one receiver. What it gives up is the restore after
a cancellation: a receive cancelled while its ``BZPOPMIN`` is in flight could
lose the message Redis popped for it. So it blocks for a bounded time
(``timeout``) and is never cancelled: :mod:`daphne.worker` stops by waiting
for the current call to return. A message is then run at most once, and
exactly once unless a worker dies between taking it and running it (that
request gets daphne's 503 after ``--http-timeout``).

:class:`OneTripSender` sends as the layer's ``send`` does (drop expired
messages, refuse with the layer's ``ChannelFull`` at capacity, add, set the
expiry), in one Lua script, so one round trip to Redis instead of four;
daphne and daphne-worker send every message with it.

It reads and writes channels_redis's storage directly (a sorted set per channel at
``prefix + name``, members serialised by the layer, scored by send time), so
``setup.py`` bounds channels_redis to the releases it was checked with.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

#: The layer's send, as one script: KEYS[1] the channel's sorted set;
#: ARGV: oldest score kept, capacity, score, member, expiry (seconds).
SEND_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
if redis.call('ZCOUNT', KEYS[1], '-inf', '+inf') >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

logger = logging.getLogger(__name__)

#: What :meth:`ExactlyOnceReceiver.receive` returns: ``(channel, message)``.
Received = tuple[str, dict[str, Any]]


#: The channels_redis releases whose storage this module was checked against
#: (``setup.py``'s ``redis`` extra asks for the same range).
CHECKED_RELEASES = ((4, 3), (4, 4))


def checked_release(version: str) -> bool:
    """Whether a channels_redis version string is one this module knows."""
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = CHECKED_RELEASES
    return low <= major_minor < high


def is_channels_redis(layer: Any) -> bool:
    """Whether ``layer`` is a ``channels_redis.core.RedisChannelLayer`` of a
    release whose storage :class:`ExactlyOnceReceiver` knows.

    Another release is served through the layer's own ``send``/``receive``
    (correct, but without the exactly-once guarantee), with a warning."""
    try:
        import channels_redis
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    if not isinstance(layer, RedisChannelLayer):
        return False
    version = getattr(channels_redis, "__version__", "")
    if checked_release(version):
        return True
    logger.warning(
        "channels_redis %s is not a release daphne was checked with (4.3.x); "
        "using the layer's own send and receive, which can hand a message to "
        "two receivers (install daphne[redis] for a checked release)",
        version or "(unknown version)",
    )
    return False


class ExactlyOnceReceiver:
    """Takes messages off ordinary channels of a channels_redis layer, each
    message by exactly one receiver however many processes receive.

    ``channels`` are ordinary names, or process-specific prefixes (ending
    in ``!``) that this process alone receives on; :meth:`receive` returns
    the first message on any of them (with its full channel name), oldest
    first, or ``None`` after ``timeout`` seconds. Every host of the layer is
    read: channels_redis spreads ordinary channels over its hosts, and the
    channels under one prefix too (it hashes their full names). Call it
    from one event loop, and never cancel it."""

    def __init__(
        self, layer: Any, channels: Sequence[str], timeout: float = 1.0
    ) -> None:
        for name in channels:
            if "?" in name or "!" in name[:-1]:
                raise ValueError(f"Cannot receive on {name!r}")
        self.layer = layer
        self.keys = [layer.prefix + name for name in channels]
        self.timeout = timeout
        #: The host to look at first on the next call (sends are spread
        #: over the hosts in turn; so are receives).
        self.next_host = 0

    async def receive(self) -> Received | None:
        layer = self.layer
        hosts = layer.ring_size
        # Each host is waited on in turn, for its share of the timeout:
        # BZPOPMIN blocks on one server only.
        wait = max(self.timeout / hosts, 0.01)
        for step in range(hosts):
            index = (self.next_host + step) % hosts
            connection = layer.connection(index)
            while True:
                popped = await connection.bzpopmin(self.keys, timeout=wait)
                if popped is None:
                    break
                key, member, score = popped
                if float(score) < time.time() - layer.expiry:
                    # Expired (channels_redis drops these on its next send).
                    logger.debug("Dropped an expired message from %s", key)
                    continue
                self.next_host = (index + 1) % hosts
                return self.decode(key, member)
        return None

    def decode(self, key: bytes | str, member: bytes) -> Received:
        if isinstance(key, bytes):
            key = key.decode("utf-8")
        channel = key[len(self.layer.prefix) :]
        message = self.layer.deserialize(member)
        # (As the layer's own receive does for process-specific channels.)
        channel = message.pop("__asgi_channel__", channel)
        return channel, message


class OneTripSender:
    """``layer.send(channel, message)`` in one round trip to Redis."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        #: connection pool -> its registered script (one per host and loop)
        self.scripts: dict[int, Any] = {}
        #: Ordinary channels go to the hosts in turn, as the layer sends them.
        self.hosts = itertools.cycle(range(layer.ring_size))

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        layer = self.layer
        if not isinstance(message, dict):
            raise TypeError("A message must be a dict")
        layer.require_valid_channel_name(channel)
        if "!" in channel:
            message = {**message, "__asgi_channel__": channel}
            index = layer.consistent_hash(channel)
            key = layer.prefix + layer.non_local_name(channel)
        else:
            index = next(self.hosts)
            key = layer.prefix + channel
        connection = layer.connection(index)
        script = self.scripts.get(id(connection.connection_pool))
        if script is None:
            script = connection.register_script(SEND_SCRIPT)
            self.scripts[id(connection.connection_pool)] = script
        now = time.time()
        expiry = int(layer.expiry)
        added = await script(
            keys=[key],
            args=[
                int(now) - expiry,
                layer.get_capacity(channel),
                now,
                layer.serialize(message),
                expiry,
            ],
            client=connection,
        )
        if not added:
            from channels.exceptions import ChannelFull

            raise ChannelFull()

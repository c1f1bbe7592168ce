"""A conformance suite for ASGI v1 (Channels 1.x) channel layers.

:class:`ChannelLayerConformance` is a mixin of pytest test methods that checks
a layer against the channel-layer interface daphne relies on: ``send`` and
``receive`` (with FIFO order per channel, message validation and copying,
capacity, message size limits, expiry and blocking receives),
process-specific channels (``prefix!suffix``), ``new_channel``, and the
``groups``, ``flush`` and ``twisted`` extensions.

It ships with daphne so that other layers can be checked the same way. In a
test module of your own, subclass it (under a name pytest collects) and
implement :meth:`~ChannelLayerConformance.make_layer`::

    from daphne.layers.conformance import ChannelLayerConformance
    from mypackage import MyChannelLayer


    class TestMyChannelLayer(ChannelLayerConformance):
        # Switch off what the layer cannot be configured to do; the tests
        # that need it are skipped, and say why.
        supports_clock = False  # no ``clock`` option: expiry tests sleep

        def make_layer(self, **options):
            return MyChannelLayer(**options)

``make_layer`` receives only the options a test needs, from this list:
``expiry``, ``group_expiry``, ``capacity``, ``channel_capacity``,
``max_message_size``, ``blocking_timeout`` and ``clock`` (see the
``supports_*`` attributes for which of them a layer may decline). Every test
uses fresh, randomly suffixed channel and group names, and every layer made
is flushed afterwards when it has the ``flush`` extension, so a layer backed
by a shared server can run the suite too. A subclass that defines
``setup_method`` or ``teardown_method`` must call the mixin's. Invalid
names, messages and patterns must be refused with ``TypeError``, unless the
subclass lists other exceptions in ``invalid_argument_errors``.

The ``groups``, ``flush`` and ``twisted`` tests run only when the layer lists
the extension in ``layer.extensions``. The one property test uses
Hypothesis and is skipped when Hypothesis is not installed.
"""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

__all__ = ["ChannelLayerConformance", "FakeClock"]

#: A sample of everything a message may carry.
SAMPLE_MESSAGE: dict[str, Any] = {
    "text": "héllo wörld ✓",
    "empty_text": "",
    "bytes": b"\x00\xffbinary\r\n",
    "empty_bytes": b"",
    "int": 42,
    "negative": -7,
    "big": 2**62,
    "float": 3.25,
    "true": True,
    "false": False,
    "none": None,
    "list": [1, "two", b"three", None, [4.5]],
    "tuple": (1, "x"),
    "empty_list": [],
    "dict": {"nested": {"deeper": [{"k": b"v"}]}},
    "empty_dict": {},
}


class FakeClock:
    """A clock for ``make_layer(clock=...)`` that moves only when told."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def assert_same_message(received: Any, sent: Any, path: str = "message") -> None:
    """``received`` carries the same data as ``sent``.

    Types matter (``bytes`` is not ``str``, ``True`` is not ``1``), except
    that a tuple may come back as a list, as serialising layers do."""
    if isinstance(sent, (list, tuple)):
        assert isinstance(received, (list, tuple)), f"{path}: {received!r}"
        assert len(received) == len(sent), f"{path}: {received!r} != {sent!r}"
        for index, (got, want) in enumerate(zip(received, sent, strict=True)):
            assert_same_message(got, want, f"{path}[{index}]")
    elif isinstance(sent, dict):
        assert isinstance(received, dict), f"{path}: {received!r}"
        assert set(received) == set(sent), f"{path}: keys {set(received)}"
        for key in sent:
            assert_same_message(received[key], sent[key], f"{path}[{key!r}]")
    else:
        assert type(received) is type(sent), f"{path}: {received!r} != {sent!r}"
        assert received == sent, f"{path}: {received!r} != {sent!r}"


class ChannelLayerConformance:
    """Tests every ASGI v1 channel layer should pass; see the module docs."""

    #: ``make_layer`` honours ``expiry`` and ``group_expiry``.
    supports_expiry: ClassVar[bool] = True
    #: ``make_layer`` honours ``clock`` (a callable returning seconds). If
    #: not, expiry tests wait in real time, ``real_time_unit`` at a time.
    supports_clock: ClassVar[bool] = True
    #: ``make_layer`` honours ``capacity``.
    supports_capacity_option: ClassVar[bool] = True
    #: ``make_layer`` honours ``channel_capacity`` (glob pattern -> capacity).
    supports_channel_capacity: ClassVar[bool] = True
    #: ``make_layer`` honours ``max_message_size``.
    supports_max_message_size: ClassVar[bool] = True
    #: ``receive(..., block=True)`` waits, and ``make_layer`` honours
    #: ``blocking_timeout``.
    supports_blocking: ClassVar[bool] = True
    #: With the ``twisted`` extension, ``receive_twisted`` fires its Deferred
    #: at once, without a running reactor, when a message is already queued.
    supports_twisted: ClassVar[bool] = True
    #: Seconds one expiry "unit" lasts when the layer has no ``clock`` option.
    real_time_unit: ClassVar[float] = 1
    #: How many non-blocking receives to try before deciding a message that
    #: was sent is missing (for layers where a send takes time to show up).
    receive_attempts: ClassVar[int] = 1
    #: What a call with an invalid channel or group name, message or
    #: ``new_channel`` pattern may raise. ASGI v1 only says that such a call
    #: fails; ``TypeError`` is what asgiref 1.x's base layer raised for bad
    #: names. (``asgi_redis``, for one, checks some arguments with ``assert``.)
    invalid_argument_errors: ClassVar[tuple[type[Exception], ...]] = (TypeError,)

    def make_layer(self, **options: Any) -> Any:
        """A new layer configured with ``options``; subclasses implement it."""
        raise NotImplementedError("subclasses of ChannelLayerConformance must")

    # -- helpers ---------------------------------------------------------------

    def setup_method(self, method: Any = None) -> None:
        self._layers: list[Any] = []
        self.clock = FakeClock()
        self._names = random.Random()

    def teardown_method(self, method: Any = None) -> None:
        for layer in getattr(self, "_layers", []):
            if "flush" in self.extensions_of(layer):
                layer.flush()

    def layer(self, **options: Any) -> Any:
        """A layer for this test, flushed when the test ends."""
        made = self.make_layer(**options)
        self._layers.append(made)
        return made

    def expiring_layer(self, **options: Any) -> Any:
        """A layer whose ``expiry``/``group_expiry`` options are given in
        units of :meth:`advance`, on the fake clock when the layer takes one."""
        if not self.supports_expiry:
            pytest.skip("the layer's expiry is not configurable")
        for key in ("expiry", "group_expiry"):
            if key in options:
                options[key] = options[key] * self._unit()
        if self.supports_clock:
            options["clock"] = self.clock
        return self.layer(**options)

    def _unit(self) -> float:
        return 10 if self.supports_clock else self.real_time_unit

    def advance(self, units: float) -> None:
        """Let ``units`` expiry units pass (on the fake clock, or for real)."""
        if self.supports_clock:
            self.clock.advance(units * self._unit())
        else:
            time.sleep(units * self._unit())

    def name(self, kind: str = "channel") -> str:
        """A fresh channel (or group) name, unlikely to be in use."""
        suffix = "".join(self._names.choices(string.ascii_lowercase, k=10))
        return f"conformance.{kind}.{suffix}"

    @staticmethod
    def extensions_of(layer: Any) -> list[str]:
        return list(getattr(layer, "extensions", []))

    def require(self, layer: Any, extension: str) -> None:
        if extension not in self.extensions_of(layer):
            pytest.skip(f"the layer lacks the {extension!r} extension")

    def receive_one(self, layer: Any, channels: list[str]) -> tuple[Any, Any]:
        """A non-blocking receive, retried ``receive_attempts`` times."""
        for _ in range(self.receive_attempts):
            channel, message = layer.receive(channels)
            if channel is not None:
                return channel, message
        return None, None

    def drain(self, layer: Any, channels: list[str]) -> Iterator[tuple[str, Any]]:
        """Receive until nothing is left on ``channels``."""
        while True:
            channel, message = self.receive_one(layer, channels)
            if channel is None:
                return
            yield channel, message

    def assert_empty(self, layer: Any, channels: list[str]) -> None:
        assert layer.receive(channels) == (None, None)

    # -- the basics ------------------------------------------------------------

    def test_extensions_is_a_list_of_names(self) -> None:
        extensions = self.layer().extensions
        assert isinstance(extensions, (list, tuple, set, frozenset))
        assert all(isinstance(name, str) for name in extensions)

    def test_exceptions_are_layer_attributes(self) -> None:
        layer = self.layer()
        for attribute in ("ChannelFull", "MessageTooLarge"):
            exception = getattr(layer, attribute)
            assert isinstance(exception, type)
            assert issubclass(exception, Exception)
            assert getattr(type(layer), attribute) is exception
        assert layer.ChannelFull is not layer.MessageTooLarge

    def test_send_then_receive(self) -> None:
        layer = self.layer()
        channel = self.name()
        layer.send(channel, {"value": "hello"})
        received_channel, message = self.receive_one(layer, [channel])
        assert received_channel == channel
        assert message == {"value": "hello"}
        self.assert_empty(layer, [channel])

    def test_receive_on_empty_channels(self) -> None:
        layer = self.layer()
        assert layer.receive([self.name()]) == (None, None)
        assert layer.receive([self.name(), self.name()]) == (None, None)

    def test_receive_ignores_other_channels(self) -> None:
        layer = self.layer()
        sent_to, listened_on = self.name(), self.name()
        layer.send(sent_to, {"n": 1})
        self.assert_empty(layer, [listened_on])
        assert self.receive_one(layer, [sent_to]) == (sent_to, {"n": 1})

    def test_fifo_per_channel(self) -> None:
        layer = self.layer()
        channel = self.name()
        for n in range(20):
            layer.send(channel, {"n": n})
        received = [message["n"] for _, message in self.drain(layer, [channel])]
        assert received == list(range(20))

    def test_fifo_per_channel_across_several_channels(self) -> None:
        layer = self.layer()
        first, second = self.name(), self.name()
        for n in range(10):
            layer.send(first, {"n": n})
            layer.send(second, {"n": n})
        received: dict[str, list[int]] = {first: [], second: []}
        for channel, message in self.drain(layer, [first, second]):
            received[channel].append(message["n"])
        assert received == {first: list(range(10)), second: list(range(10))}

    def test_every_value_type_round_trips(self) -> None:
        layer = self.layer()
        channel = self.name()
        layer.send(channel, SAMPLE_MESSAGE)
        received_channel, message = self.receive_one(layer, [channel])
        assert received_channel == channel
        assert_same_message(message, SAMPLE_MESSAGE)

    def test_empty_message(self) -> None:
        layer = self.layer()
        channel = self.name()
        layer.send(channel, {})
        assert self.receive_one(layer, [channel]) == (channel, {})

    def test_message_is_copied_on_send(self) -> None:
        layer = self.layer()
        channel = self.name()
        message: dict[str, Any] = {"list": [1, 2], "dict": {"k": "v"}, "s": "a"}
        layer.send(channel, message)
        message["list"].append(3)
        message["dict"]["k"] = "changed"
        message["s"] = "changed"
        message["new"] = True
        _, received = self.receive_one(layer, [channel])
        assert received == {"list": [1, 2], "dict": {"k": "v"}, "s": "a"}

    def test_a_received_message_is_its_own(self) -> None:
        """Changing one received copy does not change the next one."""
        layer = self.layer()
        channel = self.name()
        message = {"items": [1], "inner": {"k": "v"}}
        layer.send(channel, message)
        layer.send(channel, message)
        _, first = self.receive_one(layer, [channel])
        first["items"].append(2)
        first["inner"]["k"] = "changed"
        _, second = self.receive_one(layer, [channel])
        assert second == {"items": [1], "inner": {"k": "v"}}

    def test_valid_channel_names(self) -> None:
        layer = self.layer()
        suffix = self.name("").rsplit(".", 1)[1]
        names = [
            f"a{suffix}",
            f"http.request.{suffix}",
            f"Mixed-Case_and.digits-123.{suffix}",
            f"single.reader.{suffix}?abc",
            ("x" * 99)[: 99 - len(suffix)] + suffix,
        ]
        for channel in names:
            assert len(channel) < 100
            layer.send(channel, {"to": channel})
            assert self.receive_one(layer, [channel]) == (channel, {"to": channel})

    @pytest.mark.parametrize(
        "channel",
        [
            "",
            "has space",
            "slash/name",
            "colon:name",
            "ümlaut",
            "trailing.newline\n",
            "two!bangs!here",
            "mixed?and!marks",
            "!no.prefix",
            "?no.prefix",
            "x" * 100,
            b"bytes.name",
            None,
            42,
        ],
        ids=repr,
    )
    def test_send_rejects_invalid_channel_names(self, channel: Any) -> None:
        layer = self.layer()
        with pytest.raises(self.invalid_argument_errors):
            layer.send(channel, {"a": 1})

    @pytest.mark.parametrize(
        "message",
        [
            None,
            "text",
            b"bytes",
            [("key", "value")],
            {1: "int key"},
            {b"key": "bytes key"},
            {None: "none key"},
            {"nested": {2: "int key"}},
            {"value": object()},
            {"value": {1, 2}},
            {"value": frozenset()},
            {"value": bytearray(b"x")},
            {"value": 1j},
            {"value": print},
            {"list": [1, object()]},
            {"tuple": (1, {"deep": [set()]})},
        ],
        ids=repr,
    )
    def test_send_rejects_invalid_messages(self, message: Any) -> None:
        layer = self.layer()
        channel = self.name()
        with pytest.raises(self.invalid_argument_errors):
            layer.send(channel, message)
        self.assert_empty(layer, [channel])

    def test_message_round_trip_property(self) -> None:
        hypothesis = pytest.importorskip("hypothesis")
        st = pytest.importorskip("hypothesis.strategies")
        layer = self.layer()
        channel = self.name()
        scalars = (
            st.none()
            | st.booleans()
            | st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.floats(allow_nan=False)
            | st.text(max_size=20)
            | st.binary(max_size=20)
        )
        values = st.recursive(
            scalars,
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.lists(inner, max_size=4).map(tuple)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        )
        messages = st.dictionaries(st.text(max_size=8), values, max_size=5)

        @hypothesis.settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(messages)
        def round_trip(message: dict[str, Any]) -> None:
            layer.send(channel, message)
            received_channel, received = self.receive_one(layer, [channel])
            assert received_channel == channel
            assert_same_message(received, message)

        round_trip()

    # -- capacity --------------------------------------------------------------

    def capacity_layer(self, **options: Any) -> Any:
        if not self.supports_capacity_option:
            pytest.skip("the layer's capacity is not configurable")
        return self.layer(**options)

    def test_channel_full(self) -> None:
        layer = self.capacity_layer(capacity=3)
        channel = self.name()
        for n in range(3):
            layer.send(channel, {"n": n})
        with pytest.raises(layer.ChannelFull):
            layer.send(channel, {"n": 3})
        received = [message["n"] for _, message in self.drain(layer, [channel])]
        assert received == [0, 1, 2]

    def test_capacity_is_per_channel(self) -> None:
        layer = self.capacity_layer(capacity=1)
        full, other = self.name(), self.name()
        layer.send(full, {"n": 1})
        with pytest.raises(layer.ChannelFull):
            layer.send(full, {"n": 2})
        layer.send(other, {"n": 3})
        assert self.receive_one(layer, [other]) == (other, {"n": 3})

    def test_receiving_frees_capacity(self) -> None:
        layer = self.capacity_layer(capacity=2)
        channel = self.name()
        layer.send(channel, {"n": 1})
        layer.send(channel, {"n": 2})
        assert self.receive_one(layer, [channel]) == (channel, {"n": 1})
        layer.send(channel, {"n": 3})
        with pytest.raises(layer.ChannelFull):
            layer.send(channel, {"n": 4})
        received = [message["n"] for _, message in self.drain(layer, [channel])]
        assert received == [2, 3]

    def test_channel_capacity_patterns(self) -> None:
        if not self.supports_channel_capacity:
            pytest.skip("the layer has no channel_capacity option")
        suffix = self.name("").rsplit(".", 1)[1]
        layer = self.capacity_layer(
            capacity=3,
            channel_capacity={f"exact.{suffix}": 1, f"glob.{suffix}.*": 2},
        )
        expected = {
            f"exact.{suffix}": 1,
            f"glob.{suffix}.one": 2,
            f"glob.{suffix}.two.deeper": 2,
            f"exact.{suffix}.longer": 3,
            f"other.{suffix}": 3,
        }
        for channel, capacity in expected.items():
            for n in range(capacity):
                layer.send(channel, {"n": n})
            with pytest.raises(layer.ChannelFull):
                layer.send(channel, {"n": capacity})

    # -- message size ----------------------------------------------------------

    def test_message_too_large(self) -> None:
        if not self.supports_max_message_size:
            pytest.skip("the layer's max_message_size is not configurable")
        layer = self.layer(max_message_size=1000)
        channel = self.name()
        too_large = [
            {"bytes": b"x" * 2000},
            {"text": "y" * 2000},
            {"nested": {"list": [b"z" * 600, "w" * 600]}},
        ]
        for message in too_large:
            with pytest.raises(layer.MessageTooLarge):
                layer.send(channel, message)
        self.assert_empty(layer, [channel])
        layer.send(channel, {"bytes": b"x" * 200})
        assert self.receive_one(layer, [channel]) == (channel, {"bytes": b"x" * 200})

    def test_default_size_limit_takes_a_large_message(self) -> None:
        layer = self.layer()
        channel = self.name()
        body = bytes(range(256)) * 1024  # 256 KiB
        layer.send(channel, {"body": body})
        assert self.receive_one(layer, [channel]) == (channel, {"body": body})

    # -- process-specific channels --------------------------------------------

    def test_process_channel_is_received_on_its_prefix(self) -> None:
        layer = self.layer()
        prefix = self.name("process") + "!"
        layer.send(prefix + "client1", {"n": 1})
        assert self.receive_one(layer, [prefix]) == (prefix + "client1", {"n": 1})
        self.assert_empty(layer, [prefix])

    def test_process_channels_share_one_fifo_queue(self) -> None:
        layer = self.layer()
        prefix = self.name("process") + "!"
        sends = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)]
        for suffix, n in sends:
            layer.send(prefix + suffix, {"n": n})
        received = [
            (channel, message["n"]) for channel, message in self.drain(layer, [prefix])
        ]
        assert received == [(prefix + suffix, n) for suffix, n in sends]

    def test_process_channels_do_not_leak_to_other_prefixes(self) -> None:
        layer = self.layer()
        mine, other = self.name("process") + "!", self.name("process") + "!"
        layer.send(mine + "x", {"n": 1})
        self.assert_empty(layer, [other])
        self.assert_empty(layer, [mine[:-1]])
        assert self.receive_one(layer, [other, mine]) == (mine + "x", {"n": 1})

    def test_process_channel_capacity_counts_the_prefix(self) -> None:
        layer = self.capacity_layer(capacity=2)
        prefix = self.name("process") + "!"
        layer.send(prefix + "a", {"n": 1})
        layer.send(prefix + "b", {"n": 2})
        with pytest.raises(layer.ChannelFull):
            layer.send(prefix + "c", {"n": 3})

    def test_receive_on_a_full_process_channel_name_is_refused(self) -> None:
        layer = self.layer()
        prefix = self.name("process") + "!"
        with pytest.raises(self.invalid_argument_errors):
            layer.receive([prefix + "client1"])
        with pytest.raises(self.invalid_argument_errors):
            layer.receive([self.name(), prefix + "client1"])

    # -- new_channel -----------------------------------------------------------

    def test_new_channel(self) -> None:
        layer = self.layer()
        prefix = self.name("fresh") + "."
        channel = layer.new_channel(prefix + "?")
        assert isinstance(channel, str)
        assert channel.startswith(prefix)
        # ASGI v1 has the layer add its part after the "?", which may stay
        # (as in asgi_redis) or go (as in daphne's layer).
        suffix = channel[len(prefix) :].removeprefix("?")
        assert suffix and suffix.isascii() and suffix.isalnum(), channel
        assert len(channel) < 100
        self.assert_empty(layer, [channel])
        layer.send(channel, {"n": 1})
        assert self.receive_one(layer, [channel]) == (channel, {"n": 1})

    def test_new_channel_names_differ(self) -> None:
        layer = self.layer()
        pattern = self.name("fresh") + "?"
        names = {layer.new_channel(pattern) for _ in range(200)}
        assert len(names) == 200

    def test_new_process_channel(self) -> None:
        layer = self.layer()
        prefix = self.name("process") + "!"
        channel = layer.new_channel(prefix + "?")
        assert channel.startswith(prefix)
        assert len(channel) > len(prefix)
        layer.send(channel, {"n": 1})
        assert self.receive_one(layer, [prefix]) == (channel, {"n": 1})

    @pytest.mark.parametrize("pattern", ["no.marker", "ends.with.bang!", "?.x", ""])
    def test_new_channel_needs_a_question_mark(self, pattern: str) -> None:
        layer = self.layer()
        with pytest.raises(self.invalid_argument_errors):
            layer.new_channel(pattern)

    def test_new_channel_with_a_long_pattern_gives_a_valid_name(self) -> None:
        """Near the length limit, new_channel refuses or stays under it."""
        layer = self.layer()
        for length in (85, 90, 95, 98):
            pattern = ("p" * length) + "?"
            try:
                channel = layer.new_channel(pattern)
            except self.invalid_argument_errors:
                continue
            assert len(channel) < 100, f"{len(channel)}-character name {channel!r}"
            layer.send(channel, {"n": length})
            assert self.receive_one(layer, [channel]) == (channel, {"n": length})

    # -- expiry ------------------------------------------------------------------

    def test_messages_expire(self) -> None:
        layer = self.expiring_layer(expiry=1)
        channel = self.name()
        layer.send(channel, {"n": 1})
        self.advance(1.5)
        self.assert_empty(layer, [channel])

    def test_messages_live_until_expiry(self) -> None:
        layer = self.expiring_layer(expiry=3)
        channel = self.name()
        layer.send(channel, {"n": 1})
        self.advance(1)
        layer.send(channel, {"n": 2})
        self.advance(1)
        assert self.receive_one(layer, [channel]) == (channel, {"n": 1})
        self.advance(1.5)  # the first would have expired now, the second not
        assert self.receive_one(layer, [channel]) == (channel, {"n": 2})

    def test_only_expired_messages_are_dropped(self) -> None:
        layer = self.expiring_layer(expiry=2)
        channel = self.name()
        layer.send(channel, {"n": 1})
        self.advance(1.2)
        layer.send(channel, {"n": 2})
        self.advance(1.2)
        assert self.receive_one(layer, [channel]) == (channel, {"n": 2})
        self.assert_empty(layer, [channel])

    def test_expired_messages_free_capacity(self) -> None:
        if not self.supports_capacity_option:
            pytest.skip("the layer's capacity is not configurable")
        layer = self.expiring_layer(expiry=1, capacity=1)
        channel = self.name()
        layer.send(channel, {"n": 1})
        with pytest.raises(layer.ChannelFull):
            layer.send(channel, {"n": 2})
        self.advance(1.5)
        layer.send(channel, {"n": 3})
        assert self.receive_one(layer, [channel]) == (channel, {"n": 3})

    def test_process_channel_messages_expire(self) -> None:
        layer = self.expiring_layer(expiry=1)
        prefix = self.name("process") + "!"
        layer.send(prefix + "a", {"n": 1})
        self.advance(1.5)
        self.assert_empty(layer, [prefix])

    # -- blocking receive ----------------------------------------------------------

    def blocking_layer(self, timeout: float) -> Any:
        if not self.supports_blocking:
            pytest.skip("the layer has no configurable blocking receive")
        return self.layer(blocking_timeout=timeout)

    def send_later(self, layer: Any, channel: str, message: dict, delay: float) -> None:
        timer = threading.Timer(delay, layer.send, (channel, message))
        timer.daemon = True
        timer.start()

    def test_blocking_receive_returns_a_queued_message_at_once(self) -> None:
        layer = self.blocking_layer(5.0)
        channel = self.name()
        layer.send(channel, {"n": 1})
        started = time.monotonic()
        assert layer.receive([channel], block=True) == (channel, {"n": 1})
        assert time.monotonic() - started < 1

    def test_blocking_receive_times_out(self) -> None:
        layer = self.blocking_layer(0.1)
        started = time.monotonic()
        assert layer.receive([self.name()], block=True) == (None, None)
        assert time.monotonic() - started < 3

    def test_blocking_receive_wakes_on_send(self) -> None:
        layer = self.blocking_layer(5.0)
        quiet, channel = self.name(), self.name()
        self.send_later(layer, channel, {"n": 1}, 0.05)
        started = time.monotonic()
        assert layer.receive([quiet, channel], block=True) == (channel, {"n": 1})
        assert time.monotonic() - started < 2

    def test_blocking_receive_wakes_on_process_channel_send(self) -> None:
        layer = self.blocking_layer(5.0)
        prefix = self.name("process") + "!"
        self.send_later(layer, prefix + "abc", {"n": 1}, 0.05)
        started = time.monotonic()
        assert layer.receive([prefix], block=True) == (prefix + "abc", {"n": 1})
        assert time.monotonic() - started < 2

    # -- groups ------------------------------------------------------------------

    def group_layer(self, **options: Any) -> Any:
        layer = self.layer(**options)
        self.require(layer, "groups")
        return layer

    def test_send_group_reaches_every_member(self) -> None:
        layer = self.group_layer()
        group = self.name("group")
        members = [self.name() for _ in range(3)]
        outsider = self.name()
        for channel in members:
            layer.group_add(group, channel)
        assert sorted(layer.group_channels(group)) == sorted(members)
        layer.send_group(group, {"hello": "all"})
        for channel in members:
            assert self.receive_one(layer, [channel]) == (channel, {"hello": "all"})
            self.assert_empty(layer, [channel])
        self.assert_empty(layer, [outsider])

    def test_group_add_is_idempotent(self) -> None:
        layer = self.group_layer()
        group, channel = self.name("group"), self.name()
        layer.group_add(group, channel)
        layer.group_add(group, channel)
        assert list(layer.group_channels(group)) == [channel]
        layer.send_group(group, {"n": 1})
        assert self.receive_one(layer, [channel]) == (channel, {"n": 1})
        self.assert_empty(layer, [channel])

    def test_group_discard(self) -> None:
        layer = self.group_layer()
        group, stays, leaves = self.name("group"), self.name(), self.name()
        layer.group_add(group, stays)
        layer.group_add(group, leaves)
        layer.group_discard(group, leaves)
        assert list(layer.group_channels(group)) == [stays]
        layer.send_group(group, {"n": 1})
        assert self.receive_one(layer, [stays]) == (stays, {"n": 1})
        self.assert_empty(layer, [leaves])

    def test_discarding_a_non_member_is_harmless(self) -> None:
        layer = self.group_layer()
        group, member = self.name("group"), self.name()
        layer.group_discard(group, self.name())  # an unknown group
        layer.group_add(group, member)
        layer.group_discard(group, self.name())  # not a member
        assert list(layer.group_channels(group)) == [member]

    def test_unknown_group(self) -> None:
        layer = self.group_layer()
        group = self.name("group")
        assert list(layer.group_channels(group)) == []
        layer.send_group(group, {"n": 1})  # goes nowhere, raises nothing

    def test_groups_are_separate(self) -> None:
        layer = self.group_layer()
        first, second = self.name("group"), self.name("group")
        a, b = self.name(), self.name()
        layer.group_add(first, a)
        layer.group_add(second, b)
        layer.send_group(first, {"to": "first"})
        assert self.receive_one(layer, [a]) == (a, {"to": "first"})
        self.assert_empty(layer, [b])

    def test_send_group_skips_full_members(self) -> None:
        if not self.supports_capacity_option:
            pytest.skip("the layer's capacity is not configurable")
        layer = self.group_layer(capacity=1)
        group, full, free = self.name("group"), self.name(), self.name()
        layer.group_add(group, full)
        layer.group_add(group, free)
        layer.send(full, {"n": "already there"})
        layer.send_group(group, {"n": "group"})
        assert self.receive_one(layer, [free]) == (free, {"n": "group"})
        assert self.receive_one(layer, [full]) == (full, {"n": "already there"})
        self.assert_empty(layer, [full])

    def test_send_group_copies_the_message(self) -> None:
        layer = self.group_layer()
        group, a, b = self.name("group"), self.name(), self.name()
        layer.group_add(group, a)
        layer.group_add(group, b)
        message: dict[str, Any] = {"items": [1]}
        layer.send_group(group, message)
        message["items"].append(2)
        _, received_a = self.receive_one(layer, [a])
        received_a["items"].append(3)
        assert received_a == {"items": [1, 3]}
        assert self.receive_one(layer, [b]) == (b, {"items": [1]})

    def test_send_group_to_process_channels(self) -> None:
        layer = self.group_layer()
        group = self.name("group")
        prefix = self.name("process") + "!"
        layer.group_add(group, prefix + "one")
        layer.group_add(group, prefix + "two")
        layer.send_group(group, {"n": 1})
        received = sorted(channel for channel, _ in self.drain(layer, [prefix]))
        assert received == [prefix + "one", prefix + "two"]

    @pytest.mark.parametrize(
        "group",
        ["", "has space", "bang!", "question?", "ümlaut", "g" * 100, b"bytes", None],
        ids=repr,
    )
    def test_invalid_group_names(self, group: Any) -> None:
        layer = self.group_layer()
        channel = self.name()
        with pytest.raises(self.invalid_argument_errors):
            layer.group_add(group, channel)
        with pytest.raises(self.invalid_argument_errors):
            layer.group_discard(group, channel)
        with pytest.raises(self.invalid_argument_errors):
            layer.send_group(group, {"n": 1})
        with pytest.raises(self.invalid_argument_errors):
            layer.group_channels(group)

    def test_send_group_rejects_invalid_messages(self) -> None:
        layer = self.group_layer()
        group, channel = self.name("group"), self.name()
        layer.group_add(group, channel)
        with pytest.raises(self.invalid_argument_errors):
            layer.send_group(group, {"bad": object()})
        self.assert_empty(layer, [channel])

    def test_group_membership_expires(self) -> None:
        layer = self.expiring_layer(group_expiry=2, expiry=100)
        self.require(layer, "groups")
        group, refreshed, lapsed = self.name("group"), self.name(), self.name()
        layer.group_add(group, refreshed)
        layer.group_add(group, lapsed)
        self.advance(1)
        layer.group_add(group, refreshed)  # restarts its membership
        self.advance(1.5)
        assert list(layer.group_channels(group)) == [refreshed]
        layer.send_group(group, {"n": 1})
        assert self.receive_one(layer, [refreshed]) == (refreshed, {"n": 1})
        self.assert_empty(layer, [lapsed])
        self.advance(1)
        assert list(layer.group_channels(group)) == []

    # -- flush -------------------------------------------------------------------

    def test_flush(self) -> None:
        layer = self.layer()
        self.require(layer, "flush")
        channel = self.name()
        prefix = self.name("process") + "!"
        layer.send(channel, {"n": 1})
        layer.send(prefix + "x", {"n": 2})
        has_groups = "groups" in self.extensions_of(layer)
        group = self.name("group")
        if has_groups:
            layer.group_add(group, channel)
        layer.flush()
        self.assert_empty(layer, [channel, prefix])
        if has_groups:
            assert list(layer.group_channels(group)) == []
            layer.send_group(group, {"n": 3})
            self.assert_empty(layer, [channel])
        layer.send(channel, {"n": 4})  # the layer is still usable
        assert self.receive_one(layer, [channel]) == (channel, {"n": 4})

    def test_flush_frees_capacity(self) -> None:
        layer = self.capacity_layer(capacity=1)
        self.require(layer, "flush")
        channel = self.name()
        layer.send(channel, {"n": 1})
        layer.flush()
        layer.send(channel, {"n": 2})
        assert self.receive_one(layer, [channel]) == (channel, {"n": 2})

    # -- the twisted extension -----------------------------------------------

    def twisted_layer(self) -> Any:
        layer = self.layer()
        self.require(layer, "twisted")
        if not self.supports_twisted:
            pytest.skip("receive_twisted needs a running reactor on this layer")
        return layer

    @staticmethod
    def fired(deferred: Any) -> list[Any]:
        """What ``deferred`` has fired with so far (at most one result)."""
        from twisted.internet.defer import Deferred

        assert isinstance(deferred, Deferred)
        results: list[Any] = []
        deferred.addBoth(results.append)
        return results

    def test_receive_twisted_fires_with_a_queued_message(self) -> None:
        layer = self.twisted_layer()
        channel = self.name()
        layer.send(channel, {"n": 1})
        assert self.fired(layer.receive_twisted([channel])) == [(channel, {"n": 1})]
        self.assert_empty(layer, [channel])

    def test_receive_twisted_keeps_fifo_order(self) -> None:
        layer = self.twisted_layer()
        channel = self.name()
        for n in range(3):
            layer.send(channel, {"n": n})
        results = [self.fired(layer.receive_twisted([channel])) for _ in range(3)]
        assert results == [[(channel, {"n": n})] for n in range(3)]

    def test_receive_twisted_on_a_process_prefix(self) -> None:
        layer = self.twisted_layer()
        prefix = self.name("process") + "!"
        quiet = self.name()
        layer.send(prefix + "reply", {"n": 1})
        deferred = layer.receive_twisted([quiet, prefix])
        assert self.fired(deferred) == [(prefix + "reply", {"n": 1})]

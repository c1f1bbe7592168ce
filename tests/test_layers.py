"""daphne's in-memory channel layer: the shipped conformance suite, then what
is particular to this layer (threads, a model-based property test, blocking
and Twisted wake-ups, defaults)."""

from __future__ import annotations

import asyncio
import enum
import fnmatch
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from daphne.layers import ChannelFull, InMemoryChannelLayer, MessageTooLarge
from daphne.layers.conformance import ChannelLayerConformance, FakeClock
from daphne.layers.memory import _Waiter


class TestInMemoryConformance(ChannelLayerConformance):
    def make_layer(self, **options: Any) -> InMemoryChannelLayer:
        return InMemoryChannelLayer(**options)


# -- the layer's own choices ---------------------------------------------------


def test_exceptions_are_the_package_ones():
    layer = InMemoryChannelLayer()
    assert layer.ChannelFull is ChannelFull
    assert layer.MessageTooLarge is MessageTooLarge
    assert InMemoryChannelLayer.ChannelFull is ChannelFull


def test_extensions():
    assert sorted(InMemoryChannelLayer().extensions) == ["flush", "groups", "twisted"]


def test_default_capacity_is_100():
    layer = InMemoryChannelLayer()
    for n in range(100):
        layer.send("default.capacity", {"n": n})
    with pytest.raises(ChannelFull):
        layer.send("default.capacity", {"n": 100})


def test_default_expiry_is_60_seconds():
    clock = FakeClock()
    layer = InMemoryChannelLayer(clock=clock)
    layer.send("default.expiry", {"n": 1})
    clock.advance(59)
    assert layer.receive(["default.expiry"]) == ("default.expiry", {"n": 1})
    layer.send("default.expiry", {"n": 2})
    clock.advance(61)
    assert layer.receive(["default.expiry"]) == (None, None)


def test_default_group_expiry_is_a_day():
    clock = FakeClock()
    layer = InMemoryChannelLayer(clock=clock)
    layer.group_add("default.group", "member")
    clock.advance(86400 - 1)
    assert layer.group_channels("default.group") == ["member"]
    clock.advance(2)
    assert layer.group_channels("default.group") == []


def test_default_size_limit_is_16_mib():
    layer = InMemoryChannelLayer()
    with pytest.raises(MessageTooLarge):
        layer.send("large", {"body": b"x" * (16 * 1024 * 1024 + 1)})
    layer.send("large", {"body": b"x" * (15 * 1024 * 1024)})


@pytest.mark.parametrize("channels", ["a.string", [], ()], ids=repr)
def test_receive_needs_a_non_empty_list(channels):
    with pytest.raises(TypeError):
        InMemoryChannelLayer().receive(channels)


def test_subclassed_values_arrive_as_their_base_types():
    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    layer = InMemoryChannelLayer()
    layer.send("subclasses", {"colour": Colour.RED, "name": Name("x")})
    _, message = layer.receive(["subclasses"])
    assert type(message["colour"]) is int and message["colour"] == 1
    assert type(message["name"]) is str and message["name"] == "x"


def test_send_owned_queues_the_message_itself():
    """No copy: the sender gave the message up."""
    layer = InMemoryChannelLayer()
    message = {"headers": [(b"a", b"b")], "body": b"x"}
    layer.send_owned("owned", message, 1)
    _, received = layer.receive(["owned"])
    assert received is message


def test_send_owned_holds_the_size_estimate_against_the_limit():
    layer = InMemoryChannelLayer(max_message_size=100)
    with pytest.raises(MessageTooLarge):
        layer.send_owned("owned", {"body": b""}, 101)
    layer.send_owned("owned", {"body": b""}, 100)
    assert layer.receive(["owned"]) == ("owned", {"body": b""})


def test_send_owned_checks_names_and_capacity():
    layer = InMemoryChannelLayer(capacity=1)
    for bad in ("bad name", "p!x" + "y" * 100, 42):
        with pytest.raises(TypeError):
            layer.send_owned(bad, {}, 0)
    layer.send_owned("p!one", {}, 0)
    with pytest.raises(ChannelFull):
        layer.send_owned("p!two", {}, 0)


@pytest.mark.parametrize("send", ["send", "send_owned"])
def test_names_checked_once_are_still_checked_in_full(send):
    """Checked names are remembered by their prefix: another name under the
    same prefix is still refused when its own part is invalid."""

    def put(channel: str) -> None:
        if send == "send":
            layer.send(channel, {})
        else:
            layer.send_owned(channel, {}, 0)

    layer = InMemoryChannelLayer()
    put("daphne.response.abc!xyz")
    put("well.known")
    for bad in (
        "daphne.response.abc!x y",
        "daphne.response.abc!x!y",
        "daphne.response.abc!x?",
        "daphne.response.abc!" + "x" * 80,
        "well.known ",
    ):
        with pytest.raises(TypeError):
            put(bad)
    put("daphne.response.abc!x-y.z_0")  # (valid, though not letters and digits)
    put("daphne.response.abc!")
    assert len(layer.receive_batch(["daphne.response.abc!"], 10)) == 3


def test_receive_batch_takes_up_to_its_limit_in_order():
    layer = InMemoryChannelLayer()
    for n in range(5):
        layer.send(f"batch!{n}", {"n": n})
    assert layer.receive_batch(["batch!"], 3) == [
        (f"batch!{n}", {"n": n}) for n in range(3)
    ]
    assert layer.receive_batch(["batch!"], 3) == [
        (f"batch!{n}", {"n": n}) for n in range(3, 5)
    ]
    assert layer.receive_batch(["batch!"], 3) == []


def test_receive_batch_leaves_expired_messages_behind():
    clock = FakeClock()
    layer = InMemoryChannelLayer(expiry=10, clock=clock)
    layer.send("batch!old", {"n": 1})
    clock.advance(5)
    layer.send("batch!new", {"n": 2})
    clock.advance(6)
    assert layer.receive_batch(["batch!"], 10) == [("batch!new", {"n": 2})]


def test_receive_batch_passes_what_it_leaves_to_a_waiting_receiver():
    """A batch that leaves messages queued wakes a receiver waiting on them
    (one that began to wait while the queue was being filled)."""
    layer = InMemoryChannelLayer()
    for n in range(2):
        layer.send(f"batch!{n}", {"n": n})
    woken: list[bool] = []
    layer._register(_Waiter(lambda: woken.append(True), ["batch!"]))
    assert len(layer.receive_batch(["batch!"], 1)) == 1
    assert woken == [True]
    assert len(layer.receive_batch(["batch!"], 1)) == 1
    assert woken == [True]  # (a woken waiter is no longer waiting)


# -- threads -----------------------------------------------------------------


def run_threads(targets: list[Any], timeout: float = 10) -> None:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a thread is stuck"


def stress(receivers: int, block: bool) -> list[list[tuple[str, dict]]]:
    """Four senders, each sending to a shared channel and to its own
    process-specific channel, against ``receivers`` receiving threads.
    Capacity is small, so senders also meet ``ChannelFull`` and retry.
    Returns what each receiver got, in order."""
    layer = InMemoryChannelLayer(capacity=8, blocking_timeout=0.05)
    senders, per_sender = 4, 500
    total = senders * per_sender * 2
    received: list[list[tuple[str, dict]]] = [[] for _ in range(receivers)]
    lock = threading.Lock()
    count = [0]
    deadline = time.monotonic() + 8

    def send(index: int) -> None:
        for seq in range(per_sender):
            for channel in ("stress.shared", f"stress.process!sender{index}"):
                while True:
                    try:
                        layer.send(channel, {"sender": index, "seq": seq})
                        break
                    except ChannelFull:
                        time.sleep(0.0001)

    def receive(index: int) -> None:
        mine = received[index]
        while time.monotonic() < deadline:
            with lock:
                if count[0] >= total:
                    return
            channel, message = layer.receive(
                ["stress.shared", "stress.process!"], block=block
            )
            if channel is None:
                continue
            mine.append((channel, message))
            with lock:
                count[0] += 1

    # Switch threads far more often than usual, to shake out races.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        run_threads(
            [lambda i=i: send(i) for i in range(senders)]
            + [lambda i=i: receive(i) for i in range(receivers)]
        )
    finally:
        sys.setswitchinterval(interval)
    everything = Counter(
        (channel, message["sender"], message["seq"])
        for got in received
        for channel, message in got
    )
    expected = Counter(
        (channel, sender, seq)
        for sender in range(senders)
        for seq in range(per_sender)
        for channel in ("stress.shared", f"stress.process!sender{sender}")
    )
    assert everything == expected  # nothing lost, nothing duplicated
    assert layer.receive(["stress.shared", "stress.process!"]) == (None, None)
    return received


def sequences(got: list[tuple[str, dict]]) -> dict[tuple[str, int], list[int]]:
    by_sender: dict[tuple[str, int], list[int]] = defaultdict(list)
    for channel, message in got:
        by_sender[channel, message["sender"]].append(message["seq"])
    return by_sender


def test_threads_one_receiver_sees_each_sender_in_order():
    (got,) = stress(receivers=1, block=True)
    for key, seqs in sequences(got).items():
        assert seqs == list(range(500)), key


@pytest.mark.parametrize("block", [True, False], ids=["blocking", "polling"])
def test_threads_several_receivers(block):
    """Each receiver takes messages off the queues in queue order, so what
    one receiver gets from one sender is in the order it was sent."""
    for got in stress(receivers=4, block=block):
        for key, seqs in sequences(got).items():
            assert seqs == sorted(seqs), key


def test_every_blocked_receiver_is_woken():
    """As many sends as blocked receivers: each receiver gets one, promptly
    (a wake-up passed to a receiver that lost the race is not lost)."""
    layer = InMemoryChannelLayer(blocking_timeout=5)
    results: list[tuple[Any, Any, float]] = []
    waiting = 6

    def receive() -> None:
        started = time.monotonic()
        channel, message = layer.receive(["wake.all"], block=True)
        results.append((channel, message, time.monotonic() - started))

    threads = [threading.Thread(target=receive, daemon=True) for _ in range(waiting)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    for n in range(waiting):
        layer.send("wake.all", {"n": n})
    for thread in threads:
        thread.join(3)
    assert sorted(message["n"] for _, message, _ in results) == list(range(waiting))
    assert max(elapsed for _, _, elapsed in results) < 2


def test_blocking_receive_waits_about_its_timeout():
    layer = InMemoryChannelLayer(blocking_timeout=0.15)
    started = time.monotonic()
    assert layer.receive(["quiet"], block=True) == (None, None)
    assert 0.14 <= time.monotonic() - started < 2


def test_blocking_receive_is_not_woken_by_other_channels():
    layer = InMemoryChannelLayer(blocking_timeout=0.2)
    timer = threading.Timer(0.05, layer.send, ("elsewhere", {"n": 1}))
    timer.start()
    started = time.monotonic()
    assert layer.receive(["listening"], block=True) == (None, None)
    assert time.monotonic() - started >= 0.19
    timer.join()
    assert layer.receive(["elsewhere"]) == ("elsewhere", {"n": 1})


def test_blocking_receive_wakes_promptly():
    layer = InMemoryChannelLayer(blocking_timeout=5)
    for delay in (0.0, 0.02, 0.1):
        timer = threading.Timer(delay, layer.send, ("prompt", {"delay": delay}))
        started = time.monotonic()
        timer.start()
        assert layer.receive(["prompt"], block=True) == ("prompt", {"delay": delay})
        assert time.monotonic() - started < delay + 0.5
        timer.join()


# -- receive_twisted ---------------------------------------------------------
#
# A waiting receive_twisted is woken through the global reactor's
# callFromThread. The reactor is not run (it cannot be restarted within one
# process); ``reactor.iterate`` takes single turns of it instead, which runs
# the calls queued from other threads, exactly as a running reactor would.


def iterate_reactor_until(condition, timeout: float = 2.0) -> float:
    from twisted.internet import reactor

    started = time.monotonic()
    while not condition() and time.monotonic() - started < timeout:
        reactor.iterate(0.01)
    return time.monotonic() - started


def fired(deferred) -> list[Any]:
    results: list[Any] = []
    deferred.addBoth(results.append)
    return results


def test_receive_twisted_waits_for_a_send_from_another_thread():
    layer = InMemoryChannelLayer()
    results = fired(layer.receive_twisted(["twisted.wait", "twisted.quiet"]))
    assert results == []
    timer = threading.Timer(0.05, layer.send, ("twisted.wait", {"n": 1}))
    timer.start()
    elapsed = iterate_reactor_until(lambda: results)
    timer.join()
    assert results == [("twisted.wait", {"n": 1})]
    assert elapsed < 1
    assert layer.receive(["twisted.wait"]) == (None, None)


def test_receive_twisted_waits_on_a_process_prefix():
    layer = InMemoryChannelLayer()
    results = fired(layer.receive_twisted(["daphne.response.abc!"]))
    thread = threading.Thread(
        target=layer.send, args=("daphne.response.abc!xyz", {"n": 1})
    )
    thread.start()
    thread.join()
    iterate_reactor_until(lambda: results)
    assert results == [("daphne.response.abc!xyz", {"n": 1})]


def test_waiting_receive_twisted_calls_each_get_one_message():
    layer = InMemoryChannelLayer()
    first = fired(layer.receive_twisted(["twisted.pair"]))
    second = fired(layer.receive_twisted(["twisted.pair"]))
    layer.send("twisted.pair", {"n": 1})
    iterate_reactor_until(lambda: first or second)
    iterate_reactor_until(lambda: False, timeout=0.05)  # nothing more fires
    assert len(first) + len(second) == 1
    layer.send("twisted.pair", {"n": 2})
    iterate_reactor_until(lambda: first and second)
    assert sorted(r[0][1]["n"] for r in (first, second)) == [1, 2]


def test_receive_twisted_rejects_a_full_process_channel_name():
    with pytest.raises(TypeError):
        InMemoryChannelLayer().receive_twisted(["daphne.response.abc!xyz"])


# -- a model-based property test ---------------------------------------------

EXPIRY = 10.1  # (the clock moves in whole seconds: nothing expires "exactly")
GROUP_EXPIRY = 30.1
CAPACITY = 3
CHANNEL_CAPACITY = {"small.*": 1}
CHANNELS = ["a", "b", "small.x", "small.y", "p!1", "p!2", "q!1"]
RECEIVE_NAMES = ["a", "b", "small.x", "small.y", "p!", "q!"]
# Group members never share a queue, so the order in which send_group visits
# its members (which the interface leaves open) cannot show.
MEMBERS = ["a", "small.x", "p!1", "q!1"]
GROUPS = ["g1", "g2"]


def queue_of(channel: str) -> str:
    return channel[: channel.index("!") + 1] if "!" in channel else channel


class LayerAgainstModel(RuleBasedStateMachine):
    """The layer against plain FIFO queues with capacities, expiry and
    groups."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.layer = InMemoryChannelLayer(
            expiry=EXPIRY,
            group_expiry=GROUP_EXPIRY,
            capacity=CAPACITY,
            channel_capacity=CHANNEL_CAPACITY,
            clock=self.clock,
        )
        self.queues: dict[str, deque[tuple[float, str, int]]] = defaultdict(deque)
        self.groups: dict[str, dict[str, float]] = defaultdict(dict)
        self.counter = 0

    def now(self) -> float:
        return self.clock.now

    def expire(self) -> None:
        now = self.now()
        for queue in self.queues.values():
            while queue and queue[0][0] <= now:
                queue.popleft()
        for members in self.groups.values():
            for channel in [c for c, until in members.items() if until <= now]:
                del members[channel]

    @staticmethod
    def capacity(queue: str) -> int:
        for pattern, capacity in CHANNEL_CAPACITY.items():
            if fnmatch.fnmatchcase(queue, pattern):
                return capacity
        return CAPACITY

    def has_room(self, channel: str) -> bool:
        queue = queue_of(channel)
        return len(self.queues[queue]) < self.capacity(queue)

    def put(self, channel: str, n: int) -> None:
        self.queues[queue_of(channel)].append((self.now() + EXPIRY, channel, n))

    def next_message(self) -> dict:
        self.counter += 1
        return {"n": self.counter, "payload": [b"x", {"s": "y"}]}

    @rule(channel=st.sampled_from(CHANNELS))
    def send(self, channel: str) -> None:
        self.expire()
        message = self.next_message()
        if self.has_room(channel):
            self.layer.send(channel, message)
            self.put(channel, message["n"])
        else:
            with pytest.raises(ChannelFull):
                self.layer.send(channel, message)

    @rule(
        names=st.lists(
            st.sampled_from(RECEIVE_NAMES), min_size=1, max_size=3, unique=True
        )
    )
    def receive(self, names: list[str]) -> None:
        self.expire()
        channel, message = self.layer.receive(names)
        candidates = [name for name in names if self.queues[name]]
        if not candidates:
            assert (channel, message) == (None, None)
            return
        assert channel is not None, f"nothing received but {candidates} hold messages"
        queue = queue_of(channel)
        assert queue in candidates
        _, expected_channel, n = self.queues[queue].popleft()
        assert channel == expected_channel
        assert message == {"n": n, "payload": [b"x", {"s": "y"}]}

    @rule(channel=st.sampled_from(CHANNELS))
    def send_owned(self, channel: str) -> None:
        self.expire()
        message = self.next_message()
        if self.has_room(channel):
            self.layer.send_owned(channel, message, 0)
            self.put(channel, message["n"])
        else:
            with pytest.raises(ChannelFull):
                self.layer.send_owned(channel, message, 0)

    @rule(
        names=st.lists(
            st.sampled_from(RECEIVE_NAMES), min_size=1, max_size=3, unique=True
        ),
        limit=st.integers(min_value=1, max_value=4),
    )
    def receive_batch(self, names: list[str], limit: int) -> None:
        """What ``limit`` non-blocking receives would give."""
        self.expire()
        batch = self.layer.receive_batch(names, limit)
        assert len(batch) <= limit
        for channel, message in batch:
            queue = queue_of(channel)
            assert queue in names and self.queues[queue]
            _, expected_channel, n = self.queues[queue].popleft()
            assert channel == expected_channel
            assert message == {"n": n, "payload": [b"x", {"s": "y"}]}
        if len(batch) < limit:
            assert not any(self.queues[name] for name in names)

    @rule(seconds=st.sampled_from([1, 3, 7, 11]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(group=st.sampled_from(GROUPS), channel=st.sampled_from(MEMBERS))
    def group_add(self, group: str, channel: str) -> None:
        self.layer.group_add(group, channel)
        self.groups[group][channel] = self.now() + GROUP_EXPIRY

    @rule(group=st.sampled_from(GROUPS), channel=st.sampled_from(MEMBERS))
    def group_discard(self, group: str, channel: str) -> None:
        self.layer.group_discard(group, channel)
        self.groups[group].pop(channel, None)

    @rule(group=st.sampled_from(GROUPS))
    def send_group(self, group: str) -> None:
        self.expire()
        message = self.next_message()
        self.layer.send_group(group, message)
        for channel in self.groups[group]:
            if self.has_room(channel):
                self.put(channel, message["n"])

    # (Only now and then, or the queues would rarely fill up.)
    @precondition(lambda self: self.counter % 7 == 6)
    @rule()
    def flush(self) -> None:
        self.layer.flush()
        self.queues.clear()
        self.groups.clear()

    @invariant()
    def group_members_match(self) -> None:
        self.expire()
        for group in GROUPS:
            assert sorted(self.layer.group_channels(group)) == sorted(
                self.groups[group]
            )


LayerAgainstModel.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None
)
TestLayerAgainstModel = LayerAgainstModel.TestCase


def test_a_loop_that_stops_before_waking_does_not_hold_up_other_senders():
    """Sends from an event loop wake blocked receivers after the loop's turn;
    a loop that never finishes its turn must not delay other loops' sends."""
    layer = InMemoryChannelLayer(blocking_timeout=3)
    got: dict[str, Any] = {}

    def receive(name: str) -> None:
        got[name] = layer.receive([name], block=True)

    threads = [threading.Thread(target=receive, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # (both blocked now)

    abandoned = asyncio.new_event_loop()
    asyncio.events._set_running_loop(abandoned)  # it never runs its callbacks
    try:
        layer.send("a", {"n": 0})
    finally:
        asyncio.events._set_running_loop(None)
        abandoned.close()

    async def send() -> None:
        layer.send("b", {"n": 1})

    started = time.monotonic()
    asyncio.run(send())
    threads[1].join(2)
    assert got.get("b") == ("b", {"n": 1})
    assert time.monotonic() - started < 1
    threads[0].join(5)  # (its wake-up was lost with the loop: it times out)
    assert got["a"] == ("a", {"n": 0})

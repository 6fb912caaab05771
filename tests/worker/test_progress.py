"""The progress protocol (stream/worker/progress.py) against a dict for the table and a
list for the log: what a by-area partition's messages become, in which order, and what
progress is recorded. The real-broker kill -9 tests (test_pipeline.py, test_rebalance.py)
check the same protocol end to end."""

from __future__ import annotations

import asyncio

import pytest

from stream.worker.progress import NUDGE_KEY, Message, Progress, progress_key

TP = "by-area-0"  # the protocol passes the partition's handle through untouched


class Log:
    """One by-area partition: its messages, the table the worker writes, what the agent
    handled, and the nudges it sent."""

    def __init__(self, n: int, *, first: int = 0, gone: set[int] = frozenset()) -> None:
        self.messages = [Message(b"area-%d" % (o % 3), b"v%d" % o, o, None)
                         for o in range(first, n)]
        self.gone = set(gone)
        self.first = first
        self.table: dict[bytes, bytes] = {}
        self.writes: list[tuple[bytes, bytes]] = []
        self.handled: list[list[int]] = []
        self.nudges: list[int] = []
        self.earliest_fails = False
        self.progress = Progress(self.table, self.write, self.earliest, self.read_range,
                                 self.nudge)

    async def write(self, key: bytes, value: bytes, partition: int) -> None:
        self.table[key] = value
        self.writes.append((key, value))

    async def earliest(self, tp) -> int:
        if self.earliest_fails:
            raise TimeoutError("no answer")
        return self.first

    async def read_range(self, tp, first: int, upto: int):
        for m in self.messages:
            if first <= m.offset and m.offset not in self.gone:
                yield m

    async def nudge(self, partition: int) -> None:
        self.nudges.append(partition)
        self.messages.append(Message(NUDGE_KEY, None, len(self.messages) + self.first, None))

    async def handle(self, tp, run: list[Message]) -> None:
        assert all(m.key != NUDGE_KEY for m in run), "a nudge carries nothing to apply"
        self.handled.append([m.offset for m in run])

    def feed(self, offsets) -> None:
        msgs = [m for m in self.messages if m.offset in set(offsets)]
        asyncio.run(self.progress.feed(TP, 0, msgs, self.handle))

    def check(self, end: int, position: int) -> bool:
        return asyncio.run(self.progress.check_stall(0, end, position))


def test_a_fresh_partition_is_handled_from_the_first_offset_it_holds_as_one_run():
    log = Log(5)
    log.feed(range(5))
    assert log.handled == [[0, 1, 2, 3, 4]]
    assert log.progress.done(0) == 4
    assert log.writes == [(progress_key(0), b"4")]  # once per run, after it


def test_messages_already_handled_are_dropped():
    log = Log(8)
    log.table[progress_key(0)] = b"5"
    log.feed(range(3, 8))
    assert log.handled == [[6, 7]]
    assert log.progress.done(0) == 7


def test_a_gap_is_read_back_and_handled_first_in_order():
    log = Log(8)
    log.table[progress_key(0)] = b"2"
    log.feed([6, 7])  # 3..5 were skipped by the consumer
    assert log.handled == [[3], [4], [5], [6, 7]]
    # progress after each backfilled message, then after the run
    assert [v for _, v in log.writes] == [b"3", b"4", b"5", b"7"]


def test_a_gap_in_the_middle_of_a_buffer_splits_it_around_the_backfill():
    log = Log(10)
    log.feed([0, 1, 5, 6])
    assert log.handled == [[0, 1], [2], [3], [4], [5, 6]]
    assert log.progress.done(0) == 6


def test_offsets_gone_from_the_log_are_passed_over():
    log = Log(8, gone={3, 4})
    log.table[progress_key(0)] = b"2"
    log.feed([6, 7])
    assert log.handled == [[5], [6, 7]]


def test_a_partition_whose_start_is_unknown_takes_the_stream_as_it_comes():
    log = Log(8, first=3)
    log.earliest_fails = True
    log.feed([5, 6])
    assert log.handled == [[5, 6]]


def test_a_nudge_moves_the_progress_and_applies_nothing():
    log = Log(3)
    log.messages.append(Message(NUDGE_KEY, None, 3, None))
    log.feed(range(4))
    assert log.handled == [[0, 1, 2]]
    assert log.progress.done(0) == 3


def test_a_skipped_tail_is_nudged_on_the_second_look_and_then_read_back():
    log = Log(5)
    log.feed([0, 1])  # 2..4 were skipped, and nothing comes after them
    assert not log.check(end=5, position=5)  # first look: may be in flight
    assert log.check(end=5, position=5)  # the same picture again: a skipped tail
    assert log.nudges == [0]
    log.feed([5])  # the nudge arrives and reveals the gap
    assert log.handled == [[0, 1], [2], [3], [4]]
    assert log.progress.done(0) == 5
    assert not log.check(end=6, position=6)  # caught up: nothing missing


@pytest.mark.parametrize("position", [3, 4])
def test_a_consumer_still_reading_is_not_stalled(position):
    log = Log(5)
    log.feed([0, 1])
    for _ in range(3):
        assert not log.check(end=5, position=position)
    assert log.nudges == []


def test_a_moving_end_is_not_a_stall():
    log = Log(5)
    log.feed([0, 1])
    assert not log.check(end=5, position=5)
    assert not log.check(end=6, position=6)  # a new message: look again next time
    assert log.nudges == []

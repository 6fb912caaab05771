"""The process agent's progress protocol: no by-area message is skipped, none is applied
out of order, and one already handled is not handled again.

Progress is kept in the areas table itself, under one key per partition: the offset of
the last by-area message handled (applied or dead-lettered). The table, not the consumer
group's committed offset, says where to resume. Kill -9 tests showed a restarted worker's
Faust consumer start a partition past a message whose state had never reached the
changelog, with no commit of ours covering it (traced: the skip happens inside Faust's
fetch loop around recovery), so that message's effect was lost. With progress in the
changelog the agent sees the gap between it and the next message and reads the missing
messages itself, in order, before going on (the *backfill*). Re-processing is harmless:
every meter ignores intervals it has applied.

A skipped *last* message has no successor to reveal the gap, so a timer checks each
partition whose consumer sits at the log's end while the progress stops short of it: the
same picture twice in a row is a skipped tail, not a message in flight, and the worker
sends the partition a *nudge* (a message with :data:`NUDGE_KEY` that carries nothing). The
agent then sees the gap before the nudge and reads the tail back.

:class:`Progress` holds the protocol; what it reads and writes comes in as callables, so
it is tested against a dict and a list (tests/worker/test_progress.py) as well as on the
real broker by the kill -9 tests.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import AsyncIterator, Awaitable, Callable, Mapping, NamedTuple

from stream.worker import metrics as M

log = logging.getLogger("meterwatch.progress")

PROGRESS_PREFIX = b"\x00progress:"
NUDGE_KEY = b"\x00nudge"


def progress_key(partition: int) -> bytes:
    return PROGRESS_PREFIX + str(partition).encode()


def is_progress_key(key: bytes) -> bool:
    return key.startswith(PROGRESS_PREFIX)


class Message(NamedTuple):
    """A by-area message as the protocol sees it (``src`` is what the handler needs)."""
    key: bytes
    value: bytes | None
    offset: int
    src: object


Write = Callable[[bytes, bytes, int], Awaitable[None]]        # (key, value, partition)
Earliest = Callable[[object], Awaitable[int]]                  # tp -> first offset held
ReadRange = Callable[[object, int, int], AsyncIterator[Message]]  # tp, first, upto
Nudge = Callable[[int], Awaitable[None]]                       # partition
HandleRun = Callable[[object, list[Message]], Awaitable[None]]


class Progress:
    """Where each by-area partition's handling stands, and how to move it on.

    ``table`` maps keys to the bytes last written (the areas table); ``write`` writes a
    key to it through the changelog; ``earliest`` answers the first offset a partition
    still holds; ``read_range`` reads a partition's messages from ``first`` up to (not
    including) ``upto`` in order, ending early (and saying so in the log) when the
    log no longer holds them; ``nudge`` sends a partition a nudge.

    Example:

    >>> import asyncio
    >>> table = {}
    >>> async def write(k, v, p): table[k] = v
    >>> async def earliest(tp): return 0
    >>> async def none(tp, first, upto):
    ...     return; yield
    >>> async def nudge(p): pass
    >>> progress = Progress(table, write, earliest, none, nudge)
    >>> seen = []
    >>> async def handle(tp, run): seen.extend(m.offset for m in run)
    >>> msgs = [Message(b"area-1", b"..", o, None) for o in (0, 1, 2)]
    >>> asyncio.run(progress.feed(0, 0, msgs, handle))
    >>> seen, progress.done(0)
    ([0, 1, 2], 2)
    >>> seen.clear(); asyncio.run(progress.feed(0, 0, msgs, handle)); seen
    []
    """

    def __init__(self, table: Mapping[bytes, bytes], write: Write, earliest: Earliest,
                 read_range: ReadRange, nudge: Nudge) -> None:
        self.table = table
        self.write = write
        self.earliest = earliest
        self.read_range = read_range
        self.nudge = nudge
        self._stalls: dict[int, tuple[int, int]] = {}  # partition -> (progress, end)

    def done(self, partition: int) -> int | None:
        """The offset of the last message handled on ``partition`` (None: none yet)."""
        v = self.table.get(progress_key(partition))
        return None if v is None else int(v)

    async def expected(self, tp, partition: int) -> int:
        """The next offset to handle on the partition; -1 when unknown (then the stream
        is taken as it comes)."""
        done = self.done(partition)
        if done is not None:
            return done + 1
        # Nothing handled on this partition yet: everything the topic still holds.
        try:
            return int(await self.earliest(tp))
        except Exception:  # noqa: BLE001 - no answer: take the stream as it comes
            log.warning("earliest offset of %s unknown; not checking for a gap", tp)
            return -1

    async def advance(self, partition: int, offset: int) -> None:
        """Record ``offset`` as handled: after the state it produced (same partition,
        same producer, so it lands after it in the changelog)."""
        await self.write(progress_key(partition), str(offset).encode(), partition)

    async def feed(self, tp, partition: int, messages: list[Message],
                   handle: HandleRun) -> None:
        """Hand a partition's messages, as delivered, to ``handle`` in runs of
        consecutive offsets (nudges left out), recording progress after each run:
        messages already handled are dropped, and a gap before a message is read back
        and handled first."""
        want = await self.expected(tp, partition)
        run: list[Message] = []
        for m in messages:
            if want >= 0 and m.offset < want:
                M.process_skipped.labels(why="already_handled").inc()
                continue
            if want >= 0 and m.offset > want:
                log.warning("%s: message %d arrived but %d..%d were never handled; reading "
                            "them first", tp, m.offset, want, m.offset - 1)
                await self._run(tp, partition, run, handle)
                run = []
                await self._backfill(tp, partition, want, m.offset, handle)
            want = m.offset + 1
            run.append(m)
        await self._run(tp, partition, run, handle)

    async def _run(self, tp, partition: int, run: list[Message], handle: HandleRun) -> None:
        # A crash before the progress write replays the whole run; what was applied is
        # recognised and dropped. A run of nudges only moves the progress.
        if not run:
            return
        todo = [m for m in run if m.key != NUDGE_KEY]
        if todo:
            await handle(tp, todo)
        await self.advance(partition, run[-1].offset)

    async def _backfill(self, tp, partition: int, first: int, upto: int,
                        handle: HandleRun) -> None:
        nxt = first
        async with aclosing(self.read_range(tp, first, upto)) as messages:
            async for m in messages:
                if m.offset >= upto:
                    return
                if m.offset < nxt:
                    continue
                nxt = m.offset + 1
                if m.key == NUDGE_KEY:
                    continue
                await handle(tp, [m])
                await self.advance(partition, m.offset)
                M.process_backfilled.inc()

    async def check_stall(self, partition: int, end: int, position: int) -> bool:
        """Nudge the partition if its consumer has read to the log's ``end`` while the
        progress stops short of it, for the second check in a row. Whether it nudged."""
        done = self.done(partition)
        progress = -1 if done is None else done
        stall = (progress, end)
        if position < end or progress + 1 >= end:
            self._stalls.pop(partition, None)  # consuming, or nothing missing
            return False
        if self._stalls.get(partition) != stall:
            self._stalls[partition] = stall
            return False
        log.warning("partition %d: consumer at offset %d but messages after %d were never "
                    "handled; nudging the agent to read them back", partition, position,
                    progress)
        await self.nudge(partition)
        self._stalls[partition] = (progress, end + 1)  # the nudge moves the end
        return True

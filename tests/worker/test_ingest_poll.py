"""The direct ingest's poller, on the real broker: polls keep partitions at the same
point in time, and hand every record out exactly once, in partition order."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.worker.ingest import AlignedPoller

T0 = 1_767_225_600_000  # producer timestamps (ms)


async def _setup(bootstrap: str, per_partition: dict[int, list[int]]) -> str:
    """A topic whose partition p holds records with timestamps per_partition[p] (ms),
    values 'p:i'."""
    topic = f"poll-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, len(per_partition), 1)])
    finally:
        await admin.close()
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await prod.start()
    try:
        for p, stamps in per_partition.items():
            for i, t in enumerate(stamps):
                await prod.send(topic, f"{p}:{i}".encode(), partition=p, timestamp_ms=t)
        await prod.flush()
    finally:
        await prod.stop()
    return topic


async def _drain(bootstrap: str, topic: str, n_parts: int, total: int, max_records: int):
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         auto_offset_reset="earliest", group_id=None)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(n_parts)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        # Let every partition's first fetch arrive, so the polls below see them all.
        for _ in range(100):
            if all(c.highwater(tp) for tp in tps):
                break
            await asyncio.sleep(0.05)
        poller = AlignedPoller(c, max_records)
        polls, seen = [], 0
        for _ in range(500):
            batch = await poller.poll()
            if batch:
                polls.append({tp.partition: [(r.offset, r.timestamp) for r in recs]
                              for tp, recs in batch.items()})
                seen += sum(len(r) for r in batch.values())
            if seen >= total:
                break
        return polls
    finally:
        await c.stop()


def test_polls_hand_out_every_record_once_in_partition_order(kafka_bootstrap):
    per = {0: [T0 + i for i in range(300)], 1: [T0 + 2 * i for i in range(150)],
           2: [T0 + 3 * i for i in range(100)]}
    topic = asyncio.run(_setup(kafka_bootstrap, per))
    polls = asyncio.run(_drain(kafka_bootstrap, topic, 3, 550, max_records=60))
    for p, stamps in per.items():
        offsets = [o for poll in polls for o, _ in poll.get(p, [])]
        assert offsets == list(range(len(stamps))), f"partition {p}: {offsets[:20]}..."


def test_a_partition_ahead_in_time_waits_for_the_others(kafka_bootstrap):
    # Partition 0 packs ten times as many records per millisecond as partition 1: equal
    # shares would take partition 0 through a tenth of the time partition 1 covers.
    per = {0: [T0 + i // 10 for i in range(1000)], 1: [T0 + i for i in range(100)]}
    topic = asyncio.run(_setup(kafka_bootstrap, per))
    polls = asyncio.run(_drain(kafka_bootstrap, topic, 2, 1100, max_records=40))
    spans = []
    for poll in polls:
        if 0 in poll and 1 in poll:
            # What each poll hands out of the two partitions covers the same time.
            last0 = max(t for _, t in poll[0])
            last1 = max(t for _, t in poll[1])
            spans.append(abs(last0 - last1))
    assert spans, "no poll held both partitions"
    # Equal unaligned shares (20 records each) would drift 18 ms further apart at
    # every poll; aligned, they stay within a couple of milliseconds.
    assert max(spans) <= 2, spans


def test_a_partition_whose_producer_clock_runs_ahead_is_not_held_back(kafka_bootstrap):
    # Partition 1's producer stamps an hour ahead: it must not starve behind the cutoff.
    per = {0: [T0 + i for i in range(400)], 1: [T0 + 3_600_000 + i for i in range(400)]}
    topic = asyncio.run(_setup(kafka_bootstrap, per))
    polls = asyncio.run(_drain(kafka_bootstrap, topic, 2, 800, max_records=40))
    together = [p for p in polls if p.get(0) and p.get(1)]
    # Both partitions move at full share from the first polls on.
    assert len(together) >= 8, [(len(p.get(0, [])), len(p.get(1, []))) for p in polls]
    assert sum(len(p.get(1, [])) for p in polls) == 400

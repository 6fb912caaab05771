"""``meterwatch worker``: a Faust worker (broker from METERWATCH_BROKER or --broker)."""

from __future__ import annotations

import asyncio
import gc

from stream import logsplit
from stream.cliparse import settings
from stream.kafka_admin import ensure_topics


def cmd_worker(args) -> None:
    from faust.worker import Worker

    from stream.worker.build import build

    s = settings(args, registry=args.registry, broker=args.broker, web_port=args.web_port)
    asyncio.run(ensure_topics(s))
    rt = build(s, worker_id=args.worker_id or f"w{s.web_port}")
    # --log-file: the libraries' warnings to the file, not the screen (the demo's)
    logging_config = logsplit.config(args.log_file, s.log_level) if args.log_file else None
    worker = Worker(rt.app, loglevel=s.log_level, quiet=True, redirect_stdouts=False,
                    logging_config=logging_config)
    # Faust's spinner sets the root logger to DEBUG whatever the level asked for, and
    # every debug call in faust/mode/aiokafka then builds a record (~3% of CPU).
    worker.spinner = None
    # What exists now (registry, fleet index, engine, app) lives as long as the process:
    # frozen, the collector stops re-scanning it. A poll allocates thousands of
    # short-lived objects, so young collections run every 10,000 allocations rather
    # than 700. In-process ingest+process over a simulated day: GC time 0.9-1.4 s ->
    # 0.3-0.7 s.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    worker.execute_from_commandline()


def add_parser(sub) -> None:
    w = sub.add_parser("worker", help="run a Faust worker")
    w.add_argument("--broker")
    w.add_argument("--registry")
    w.add_argument("--web-port", type=int)
    w.add_argument("--worker-id")
    w.add_argument("--log-file", help="every log record to FILE; on the screen only this "
                   "project's warnings and the Kafka libraries' errors")
    # looked up when called (not bound at parser build), so a caller may replace it
    w.set_defaults(func=lambda args: cmd_worker(args))

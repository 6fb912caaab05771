#!/usr/bin/env python
"""The worker's two stages in one process, without Kafka: where the time per reading
goes outside the broker and Faust.

    .venv/bin/python bench/stages.py                 # batched and single, us/reading
    .venv/bin/python bench/stages.py --profile       # + cProfile of each mode

Feeds the simulator's messages through ``Ingestor.handle`` (in polls of
``--poll`` messages, as direct ingest does), then each area batch through
``Processor.handle`` and ``AreaState.to_bytes`` (what the process agent does per
by-area message). Batched: the concentrator messages (~250 readings each). Single:
the same readings one per message. Prints CPU us/reading per stage (thread CPU time,
steadier than wall clock on a shared machine) and the detectors'
share (``Engine.process``). Wall clock on a shared machine: compare within one run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from stream.worker.processing import Ingestor, Processor, SourceMessage  # noqa: E402
from stream.registry import Registry  # noqa: E402
from stream.settings import load_settings, replace  # noqa: E402
from models.evaluate.sim import FleetSimulator  # noqa: E402

START = datetime(2026, 1, 5, tzinfo=ZoneInfo("Asia/Shanghai"))


def singles(batches, limit):
    dec, enc = msgspec.json.Decoder(), msgspec.json.Encoder()
    out = []
    for _, v in batches:
        for r in dec.decode(v)["readings"]:
            out.append(enc.encode(r))
            if len(out) >= limit:
                return out
    return out


def run(values: list[bytes], registry: Registry, poll: int, profile: cProfile.Profile | None):
    s = replace(load_settings(env={}), max_future_s=10 * 365 * 86400.0)
    ing, proc = Ingestor(s, registry), Processor(s, registry)
    states: dict = {}
    t_ing = t_proc = t_state = 0.0
    det0 = _detector_seconds()
    applied = 0
    if profile:
        profile.enable()
    for k in range(0, len(values), poll):
        msgs = [SourceMessage(v, "ami.readings", 0, k + i, 0)
                for i, v in enumerate(values[k:k + poll])]
        t0 = time.thread_time()
        res = ing.handle(msgs)
        t1 = time.thread_time()
        t_ing += t1 - t0
        for area_id, raw in res.area_batches:
            t1 = time.thread_time()
            hit = states.get(area_id)
            st = hit if hit is not None else proc.new_state(area_id)
            pr = proc.handle(raw, st)
            t2 = time.thread_time()
            if pr.outcome is not None and pr.outcome.applied:
                applied += pr.outcome.applied
                states[area_id] = st
                blob = st.to_bytes()
                del blob
            t3 = time.thread_time()
            t_proc += t2 - t1
            t_state += t3 - t2
    if profile:
        profile.disable()
    det = _detector_seconds() - det0
    return {"applied": applied, "ingest_s": t_ing, "process_s": t_proc, "state_s": t_state,
            "detector_s": det}


def _detector_seconds() -> float:
    from stream.worker import metrics as M

    return M.REGISTRY.get_sample_value("meterwatch_detector_seconds_total") or 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--areas", type=int, default=8)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--single", type=int, default=50_000)
    ap.add_argument("--poll", type=int, default=5000, help="messages per Ingestor.handle call")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--modes", default="batched,single")
    a = ap.parse_args(argv)
    sim = FleetSimulator(n_customers=a.customers, n_areas=a.areas, seed=0, start=START,
                         interval_s=900)
    tmp = Path(tempfile.mkdtemp(prefix="mwstages-"))
    sim.write_registry_csv(tmp / "registry.csv")
    registry = Registry.load(tmp / "registry.csv")
    batches = list(sim.iter_messages(days=a.days))
    for mode in a.modes.split(","):
        values = [v for _, v in batches] if mode == "batched" else singles(batches, a.single)
        prof = cProfile.Profile() if a.profile else None
        r = run(values, registry, a.poll, prof)
        n = max(r["applied"], 1)
        tot = r["ingest_s"] + r["process_s"] + r["state_s"]
        print(f"{mode}: {len(values)} messages, {r['applied']} readings applied; us/reading: "
              f"ingest {r['ingest_s'] / n * 1e6:.2f}, process {r['process_s'] / n * 1e6:.2f} "
              f"(detectors {r['detector_s'] / n * 1e6:.2f}), state blob "
              f"{r['state_s'] / n * 1e6:.2f}; total {tot / n * 1e6:.2f} "
              f"(outside detectors {(tot - r['detector_s']) / n * 1e6:.2f})"
              + (" [under cProfile]" if prof else ""), flush=True)
        if prof:
            buf = io.StringIO()
            st = pstats.Stats(prof, stream=buf)
            st.sort_stats("cumulative").print_stats(a.top)
            st.sort_stats("tottime").print_stats(a.top)
            print(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())

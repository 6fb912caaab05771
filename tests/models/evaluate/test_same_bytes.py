"""The simulator and the scenario injection give the same bytes as before their long
functions were split into pieces (architecture issue: no production function over ~80
lines). The hashes were recorded from the code before the split; a change here means
generated data changed, which every seeded evaluation and test fixture relies on not
doing by accident. The hashes depend on numpy's random streams: re-record them (from
the code before a change) if numpy's version changes them."""

import hashlib
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import numpy as np

from models.evaluate.inject import KINDS as SCENARIOS
from models.evaluate.inject import build_virtual, inject, local_clock
from models.evaluate.sim import KINDS, FleetSimulator

LON = "Europe/London"
IV = 1800


def _sim_with_every_kind(bad_rate: float) -> FleetSimulator:
    """A small fleet with one injection of each kind, on meters and (where they apply)
    on an area, and the random scenario on top: every branch of the day loop runs."""
    sim = FleetSimulator(n_customers=60, n_areas=3, seed=11, bad_rate=bad_rate)
    for k, kind in enumerate(KINDS):
        meter = f"M{(k * 2) % 60 + 1:06d}"
        start = 1_767_542_400 + 86400 + 3600 * (k % 7) + 900 * k  # 2026-01-05 + 1 day
        sim.inject(kind, meter, start, start + 86400 if kind != "vacancy" else None)
    for k, kind in enumerate(("undervoltage", "sag", "outage", "interruption")):
        sim.inject(kind, f"A{k % 3 + 1:03d}", 1_767_542_400 + 86400 * 2 + 5000 * k,
                   1_767_542_400 + 86400 * 2 + 5000 * k + 7200)
    sim.random_scenario(0.2, days=3)
    return sim


def _digest(chunks) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def test_simulated_fleet_messages_are_unchanged():
    sim = _sim_with_every_kind(bad_rate=0.02)
    feed = _digest(k + b"\0" + key + b"\0" + value + b"\n"
                   for k, key, value in ((kind.encode(), key, value)
                                         for kind, key, value in sim.iter_feed(days=3)))
    truth = _digest(msgspec.json.encode(r) for r in msgspec.to_builtins(sim.ground_truth()))
    assert feed == "bb049a746e274b1a2256250f474d2282e4f3460e0ea23b4d3a8ba80b0e66e442"
    assert truth == "7bc8c42ccb8ad56d24fb04ecd85700f62fcfb1d07db59d690a13417915772117"


def test_simulated_fleet_layout_and_clean_batches_are_unchanged():
    sim = _sim_with_every_kind(bad_rate=0.0)
    reg = _digest(msgspec.json.encode(r) for r in sim.registry)
    batches = _digest(msgspec.json.encode(b) for b in
                      msgspec.to_builtins(list(sim.iter_batches(days=2)), enc_hook=float))
    load = _digest(v.tobytes() for _, v in sorted(sim.true_area_load(2).items()))
    assert reg == "82512a0835ee2a3819c3f873289996368b846fca44adb7feb1ca6bdb02a4b3b6"
    assert batches == "e0d5630364335e4115e2196339354cdedfd9c6a9cc7d8510ae0343c729e978af"
    assert load == "a676cc699d7a5dca8a4c6a2a17be0a3935b4bcaedf4b5134822184aaf836e719"


def _household(days=130, seed=1):
    rng = np.random.default_rng(seed)
    z = ZoneInfo(LON)
    t0 = int(datetime(2013, 1, 1, tzinfo=z).timestamp())
    ts = t0 + IV * np.arange(1, days * 48 + 1)
    _, sod = local_clock(ts, IV, LON)
    hr = sod / 3600 + 0.25
    kw = (0.25 + 0.6 * np.exp(-0.5 * ((hr - 7.5) / 1.0) ** 2)
          + 1.4 * np.exp(-0.5 * ((hr - 19.0) / 2.0) ** 2)) * np.exp(rng.normal(0, 0.25, len(ts)))
    return ts, kw * IV / 3600


def test_injected_series_and_labels_are_unchanged():
    ts, x = _household()
    parts = []
    for kind in SCENARIOS:
        for seed in range(4):
            y, onset, end, params = inject(kind, ts, x, IV, LON, np.random.default_rng(seed))
            parts += [y.tobytes(), repr((kind, onset, end, sorted(params.items()))).encode()]
    import pandas as pd

    rows = [(f"H{h}", int(t), float(k), IV) for h in range(3)
            for t, k in zip(*_household(seed=h + 2))]
    vs = build_virtual(pd.DataFrame(rows, columns=["meter_id", "ts", "kwh", "interval_s"]),
                       seed=5, area_size=4)
    parts.append(repr(sorted(msgspec.to_builtins(vs.labels, enc_hook=repr),
                             key=repr)).encode())
    parts.append(repr(sorted(vs.skipped.items())).encode())
    parts.append(pd.util.hash_pandas_object(vs.readings, index=False).values.tobytes())
    parts.append(repr((vs.clean_ids, vs.fleet.meter_id, vs.fleet.area.tolist())).encode())
    assert _digest(parts) == "dffe3e8987a1b279875a1afe3dc5891739c421b3e1b75daa4c348fdb417abc97"

"""Specification of the real-like supply evaluation and of the voltage labels' truth
(models/evaluate/voltage.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from models.base import Fleet
from models.config import DetectorConfig
from models.evaluate.voltage import evaluate_supply, score_supply, voltage_truth

T0 = 1_767_225_600  # 2026-01-01 00:00 UTC
Q = 900


def readings(meters, volts, vmin=None):
    """One reading per quarter hour for each meter, from T0 + Q on."""
    rows = []
    for m in meters:
        for i, v in enumerate(volts):
            lo = v if vmin is None else vmin[i]
            rows.append({"meter_id": m, "ts": T0 + (i + 1) * Q, "voltage": v, "voltage_min": lo,
                         "voltage_max": v})
    return pd.DataFrame(rows)


def label(subtype, scope="meter", meter="m0", area="a0", n=8):
    return SimpleNamespace(subtype=subtype, scope=scope, meter_id=meter, area_id=area,
                           onset=T0, end=T0 + n * Q)


def truth(df, tg, fleet):
    inp = SimpleNamespace(fleet=fleet, interval_s=Q, end=T0 + 10**6)
    return voltage_truth(inp, tg, dict(tuple(df.groupby("meter_id"))), DetectorConfig())


@pytest.fixture
def fleet():
    return Fleet.simple(4, nominal_voltage=220.0)


def test_a_label_the_policy_must_raise_is_valid_and_a_normal_episode_is_not(fleet):
    m = fleet.meter_id[0]
    deep = readings([m], [0.86 * 220] * 2 + [220.0] * 6)
    assert truth(deep, label("undervoltage", meter=m), fleet) == (True, "meter")
    normal = readings([m], [0.88 * 220] * 6 + [220.0] * 2)  # 90 min within the deep band
    assert truth(normal, label("undervoltage", meter=m), fleet) == (False, "meter")
    one = readings([m], [0.86 * 220] + [220.0] * 7)  # one reading: not the deep rule
    assert truth(one, label("undervoltage", meter=m), fleet)[0] is False


def test_a_shallow_dip_label_is_not_one_to_alert_a_deep_one_is(fleet):
    m = fleet.meter_id[0]
    assert truth(readings([m], [220.0] * 2, [0.75 * 220, 220.0]), label("sag", meter=m, n=2), fleet)[0] is False
    assert truth(readings([m], [220.0] * 2, [0.6 * 220, 220.0]), label("sag", meter=m, n=2), fleet)[0] is True


def test_an_area_label_is_area_scope_when_enough_of_its_meters_share_it(fleet):
    ms = list(fleet.meter_id)
    df = readings(ms, [0.86 * 220] * 3)
    area = fleet.area_id[0]
    assert truth(df, label("undervoltage", scope="area", area=area, n=3), fleet) == (True, "area")
    one_low = pd.concat([readings(ms[:1], [0.86 * 220] * 3), readings(ms[1:], [220.0] * 3)])
    assert truth(one_low, label("undervoltage", scope="area", area=area, n=3), fleet) == (True, "meter")


def _alert(meter, subtype, t, scope="meter"):
    iso = pd.Timestamp(t, unit="s", tz="UTC").isoformat()
    return {"type": "voltage", "subtype": subtype, "status": "open", "meter_id": meter,
            "scope": scope, "detected_at": iso}


def test_score_counts_events_found_as_their_subtype_and_other_openings_per_month():
    inj = [SimpleNamespace(meter_id="m1", subtype="sag", start=T0, end=T0 + Q),
           SimpleNamespace(meter_id="m1", subtype="undervoltage", start=T0 + 10 * Q, end=T0 + 13 * Q)]
    alerts = [_alert("m1", "sag", T0 + Q),  # found
              _alert("m1", "sag", T0 + 11 * Q),  # during the undervoltage: the event's
              _alert("m2", "sag", T0 + 40 * Q),  # another
              _alert("m1", "overvoltage", T0 + 100 * Q)]  # another
    s = score_supply(alerts, inj, {"m1", "m2"}, span_s=int(365.25 / 12 * 86400))
    assert s["found"] == {"sag": (1, 1), "undervoltage": (0, 1)} and not s["all_found"]
    assert s["false"] == 2 and s["false_per_month"] == pytest.approx(1.0)


def test_on_a_real_like_supply_every_injected_event_is_found_with_few_other_openings():
    r = evaluate_supply(7, meters=3, months=3, per_meter=2)
    for std in ("en50160", "gbt12325", "ansi_c84_1"):
        assert r[std]["all_found"], (std, r[std])
        assert r[std]["found"] == {"overvoltage": (6, 6), "sag": (6, 6), "undervoltage": (6, 6)}
        assert r[std]["false_per_month"] <= 2, (std, r[std])

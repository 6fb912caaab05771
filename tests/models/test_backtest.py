"""The backtest: how it slices the readings into engine calls changes its speed, never
its alerts or its final state."""

from pathlib import Path

import pytest

from models.backtest import load_readings, run, synthetic_fleet

ROOT = Path(__file__).resolve().parents[2]
LCL = ROOT.parent / "shared" / "data" / "london_lcl" / "lcl_50_households_2013.csv.gz"


@pytest.fixture(scope="module")
def readings():
    df = load_readings(LCL, tz="Europe/London", ts_mark="start")
    ids = sorted(df["meter_id"].unique())[:12]
    df = df[df["meter_id"].isin(ids) & (df["ts"] < df["ts"].min() + 150 * 86400)].copy()
    # One household slowed to a third from day 90, so the run has theft alerts too.
    m = df["meter_id"] == ids[0]
    late = m & (df["ts"] >= df["ts"].min() + 90 * 86400)
    df.loc[late, "kwh"] = df.loc[late, "kwh"] / 3
    return df.sort_values(["ts", "meter_id"], kind="stable").reset_index(drop=True)


def test_one_call_per_timestamp_per_day_or_per_few_rows_gives_the_same_result(readings):
    fleet = synthetic_fleet(readings["meter_id"].unique())
    runs = [run(readings, fleet, tz="Europe/London", country="GB", chunk_s=s, chunk_rows=n)
            for s, n in ((1, 0), (86400, 500_000), (86400, 1000), (7 * 86400, 0))]
    base = runs[0]
    assert len(base.alerts) > 20
    assert any(a["type"] == "theft" for a in base.alerts)
    for other in runs[1:]:
        assert other.alerts == base.alerts
        assert other.state.tobytes() == base.state.tobytes()
        assert other.area_state.tobytes() == base.area_state.tobytes()
        assert other.applied == base.applied == len(readings)

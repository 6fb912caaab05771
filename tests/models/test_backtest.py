"""The backtest: how it slices the readings into engine calls changes its speed, never
its alerts or its final state."""

from pathlib import Path

import pytest

from models.backtest import ReadingsError, load_readings, run, synthetic_fleet

ROOT = Path(__file__).resolve().parents[2]
LCL = ROOT.parent / "shared" / "data" / "london_lcl" / "lcl_50_households_2013.csv.gz"


@pytest.fixture(scope="module")
def readings():
    df = load_readings(LCL, tz="UTC", ts_mark="start")  # the sample's clock is GMT
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


def test_a_local_time_file_keeps_both_copies_of_the_autumn_hour_in_order(tmp_path):
    times = ["00:30", "01:00", "01:30", "01:00", "01:30", "02:00"]  # clocks went back at 02:00
    lines = ["meter_id,ts,kwh"] + [f"{m},2013-10-27T{t}:00,{k / 10}"
                                   for m in ("a", "b") for k, t in enumerate(times)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    df = load_readings(tmp_path / "r.csv", tz="Europe/London", ts_mark="start")
    for _, g in df.groupby("meter_id"):
        assert len(g) == 6
        assert (g["ts"].diff().dropna() == 1800).all()  # one half hour apart, none lost
        assert list(g["kwh"]) == [k / 10 for k in range(6)]  # in the file's order


def test_times_that_do_not_exist_locally_are_an_error_that_names_the_likely_zone(tmp_path):
    # 01:00-02:00 on 2013-03-31 does not exist in London: such a file is on GMT.
    lines = ["meter_id,ts,kwh", "a,2013-03-31T00:30:00,0.1", "a,2013-03-31T01:00:00,0.1",
             "a,2013-03-31T01:30:00,0.1", "a,2013-03-31T02:00:00,0.1"]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ReadingsError, match="do not exist in Europe/London.*--tz UTC"):
        load_readings(tmp_path / "r.csv", tz="Europe/London", ts_mark="start")
    assert len(load_readings(tmp_path / "r.csv", tz="UTC", ts_mark="start")) == 4


# -- event names: whole names, as the stream matches them ---------------------------------

def test_event_names_match_whole_names_only():
    import pandas as pd

    from models.backtest import event_column
    from models.base import EVENT_BITS

    got = event_column(pd.Series(["terminal_cover_open", "cover_open|magnetic_tamper",
                                  '["power_fail", "terminal_cover_open"]', None, "",
                                  "vendor_cover_open_x"]))
    b = EVENT_BITS
    assert got.tolist() == [b["terminal_cover_open"], b["cover_open"] | b["magnetic_tamper"],
                            b["power_fail"] | b["terminal_cover_open"], 0, 0, 0]


def test_a_tamper_alert_carries_the_same_evidence_in_backtest_and_stream(tmp_path):
    import json

    import numpy as np
    import pandas as pd

    from stream.worker.processing import Ingestor, Processor, SourceMessage
    from stream.registry import Registry
    from stream.settings import load_settings

    reg = Registry.from_csv_text(
        "meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care\n"
        "M1,C1,A1,A,230,am,residential,false,false\n")
    ts = 1_767_200_400
    df = pd.DataFrame({"meter_id": ["M1"], "ts": [ts], "interval_s": [900], "kwh": [0.2],
                       "events": ["terminal_cover_open"]})
    [want] = run(df, reg.fleet, tz="Asia/Shanghai", country="CN").alerts
    s = load_settings(env={})
    value = json.dumps({"meter_id": "M1", "ts": ts, "kwh": 0.2,
                        "events": ["terminal_cover_open"]}).encode()
    [(_, raw)] = Ingestor(s, reg).handle([SourceMessage(value, "t", 0, 0, 0)],
                                         now=ts).area_batches
    p = Processor(s, reg)
    [(_, _, got)] = p.handle(raw, p.new_state("A1"), now=ts).alerts
    assert want["evidence"]["events"] == ["terminal_cover_open"]
    import msgspec

    from models.alerts import enc_hook

    assert (json.loads(msgspec.json.encode(got, enc_hook=enc_hook))
            == json.loads(msgspec.json.encode(want, enc_hook=enc_hook)))
    assert np.isfinite(want["score"])


def heated_street_files(tmp_path):
    """The heated street of tests/models/test_habit_weather.py as a readings CSV and a
    weather CSV (ISO 8601 with offsets), one synthetic area AREA000."""
    from datetime import datetime, timezone

    from tests.models.test_habit_weather import frame, street, temperatures, weather_frame

    temp = temperatures()
    readings = tmp_path / "readings.csv"
    frame(street(temp)).to_csv(readings, index=False)
    w = weather_frame(temp)
    w["area_id"] = "AREA000"
    w["ts"] = [datetime.fromtimestamp(int(t), timezone.utc).astimezone().isoformat()
               for t in w["ts"]]
    weather = tmp_path / "weather.csv"
    w[["area_id", "ts", "temperature_c"]].to_csv(weather, index=False)
    return readings, weather, temp


def test_backtest_reads_a_weather_file_and_applies_it_in_time_order_however_it_slices(tmp_path):
    from models.backtest import load_weather

    path, wpath, _ = heated_street_files(tmp_path)
    df = load_readings(path)
    fleet = synthetic_fleet(df["meter_id"].unique())
    weather = load_weather(wpath, fleet)
    assert len(weather) == 70 * 24 and weather["area"].eq(0).all()
    runs = [run(df, fleet, tz="Asia/Shanghai", chunk_s=s, chunk_rows=n, weather=weather)
            for s, n in ((1, 0), (86400, 500_000), (7 * 86400, 0))]
    for other in runs[1:]:
        assert other.alerts == runs[0].alerts
        assert other.state.tobytes() == runs[0].state.tobytes()
        assert other.area_state.tobytes() == runs[0].area_state.tobytes()
    assert runs[0].area_state["wa_pday"][0] > 0


def test_meterwatch_backtest_with_weather_takes_the_cold_out_of_the_heated_homes_habit(tmp_path):
    import json
    import subprocess
    import sys

    path, wpath, _ = heated_street_files(tmp_path)

    def rises(*extra):
        out = tmp_path / "alerts.jsonl"
        subprocess.run([sys.executable, "-m", "stream.cli", "backtest", "--readings", str(path),
                        "--out", str(out), "--local-tz", "Asia/Shanghai", *extra],
                       check=True, cwd=ROOT, capture_output=True)
        alerts = [json.loads(x) for x in out.read_text().splitlines()]
        return [a for a in alerts if a["meter_id"] == "H0" and a["subtype"] == "increase"
                and a["status"] == "open"]

    assert rises()
    assert rises("--weather", str(wpath)) == []


def test_a_weather_file_without_its_columns_is_a_clear_error(tmp_path):
    from models.backtest import load_weather

    bad = tmp_path / "w.csv"
    bad.write_text("area,ts,temp\nA,0,1\n")
    with pytest.raises(ReadingsError, match="missing column 'area_id'"):
        load_weather(bad, synthetic_fleet(["M1"]))

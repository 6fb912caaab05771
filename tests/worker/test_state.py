"""stream.worker.state: one transformer area's changelogged state, serialised with its dtype so
a release that adds or drops detector fields migrates old state by field name."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import Fleet
from models.engine import Engine
from stream.worker.state import AreaState


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Fleet.simple(5))


def random_records(dtype: np.dtype, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.frombuffer(rng.bytes(dtype.itemsize * n), dtype, count=n).copy()


def random_state(engine: Engine, ids: list[str], seed: int = 0) -> AreaState:
    return AreaState("A007", list(ids), random_records(engine.dtype, len(ids), seed),
                     random_records(engine.area_dtype, 1, seed + 1))


def without(dt: np.dtype, drop: str) -> np.dtype:
    return np.dtype([d for d in dt.descr if d[0] != drop])


# -- round trip -------------------------------------------------------------------------

def test_round_trip_is_byte_exact(engine):
    s = random_state(engine, ["M1", "M2", "M3"])
    back = AreaState.from_bytes(s.to_bytes(), engine.dtype, engine.area_dtype)
    assert back.area_id == "A007"
    assert back.meter_ids == ["M1", "M2", "M3"]
    assert back.records.dtype == engine.dtype and back.area_record.dtype == engine.area_dtype
    assert back.records.tobytes() == s.records.tobytes()
    assert back.area_record.tobytes() == s.area_record.tobytes()
    assert back.to_bytes() == s.to_bytes()


def test_round_trip_of_an_empty_area(engine):
    s = AreaState.empty("A1", engine.dtype, engine.area_dtype)
    back = AreaState.from_bytes(s.to_bytes(), engine.dtype, engine.area_dtype)
    assert back.meter_ids == [] and len(back.records) == 0
    assert back.area_record.shape == (1,)
    assert back.area_record.tobytes() == bytes(engine.area_dtype.itemsize)


def test_loaded_records_are_writable_copies(engine):
    s = random_state(engine, ["M1"])
    back = AreaState.from_bytes(s.to_bytes(), engine.dtype, engine.area_dtype)
    back.records["e_n"][0] = 12345  # would raise on a read-only frombuffer view
    back.area_record["ea_init"][0] = 1
    assert back.records["e_n"][0] == 12345


# -- positions --------------------------------------------------------------------------

def test_positions_of_known_meters_are_stable(engine):
    s = random_state(engine, ["M1", "M2", "M3"])
    before = s.records.tobytes()
    assert s.positions(["M3", "M1"]).tolist() == [2, 0]
    assert s.positions(["M2", "M3", "M1"]).tolist() == [1, 2, 0]
    assert s.meter_ids == ["M1", "M2", "M3"]
    assert s.records.tobytes() == before


def test_positions_append_zero_records_for_new_meters(engine):
    s = random_state(engine, ["M1", "M2"])
    old = s.records.copy()
    pos = s.positions(["M9", "M1", "M8", "M9"])
    assert pos.tolist() == [2, 0, 3, 2]
    assert s.meter_ids == ["M1", "M2", "M9", "M8"]
    assert len(s.records) == 4 and s.records.dtype == engine.dtype
    assert s.records[:2].tobytes() == old.tobytes()
    assert s.records[2:].tobytes() == bytes(2 * engine.dtype.itemsize)
    assert s.positions(["M8"]).tolist() == [3]


def test_positions_on_an_empty_state(engine):
    s = AreaState.empty("A1", engine.dtype, engine.area_dtype)
    assert s.positions(["X", "Y"]).tolist() == [0, 1]
    assert len(s.records) == 2


def test_positions_after_load_match_the_saved_order(engine):
    s = random_state(engine, ["M1", "M2", "M3"])
    back = AreaState.from_bytes(s.to_bytes(), engine.dtype, engine.area_dtype)
    assert back.positions(["M2"]).tolist() == [1]


def test_new_meters_survive_a_round_trip(engine):
    s = random_state(engine, ["M1"])
    s.positions(["M2"])
    back = AreaState.from_bytes(s.to_bytes(), engine.dtype, engine.area_dtype)
    assert back.meter_ids == ["M1", "M2"]
    assert back.records.tobytes() == s.records.tobytes()


# -- migration --------------------------------------------------------------------------

def test_blob_lacking_a_field_loads_with_common_fields_copied_and_the_new_one_zeroed(engine):
    old_dt = without(engine.dtype, "e_last_reg")
    old_adt = without(engine.area_dtype, "va_open")
    old = AreaState("A1", ["M1", "M2"], random_records(old_dt, 2, 5),
                    random_records(old_adt, 1, 6))
    back = AreaState.from_bytes(old.to_bytes(), engine.dtype, engine.area_dtype)
    assert back.records.dtype == engine.dtype and back.area_record.dtype == engine.area_dtype
    assert back.meter_ids == ["M1", "M2"]
    assert (back.records["e_last_reg"] == 0).all()
    assert (back.area_record["va_open"] == 0).all()
    for name in old_dt.names:
        assert back.records[name].tobytes() == old.records[name].tobytes(), name
    for name in old_adt.names:
        assert back.area_record[name].tobytes() == old.area_record[name].tobytes(), name


def test_blob_with_an_extra_field_drops_it_and_keeps_the_rest(engine):
    new_dt = np.dtype(engine.dtype.descr + [("zz_retired", "<f8", (3,))])
    new_adt = np.dtype(engine.area_dtype.descr + [("za_retired", "<i4")])
    old = AreaState("A1", ["M1", "M2", "M3"], random_records(new_dt, 3, 7),
                    random_records(new_adt, 1, 8))
    back = AreaState.from_bytes(old.to_bytes(), engine.dtype, engine.area_dtype)
    assert back.records.dtype == engine.dtype
    assert "zz_retired" not in back.records.dtype.names
    for name in engine.dtype.names:
        assert back.records[name].tobytes() == old.records[name].tobytes(), name
    for name in engine.area_dtype.names:
        assert back.area_record[name].tobytes() == old.area_record[name].tobytes(), name


def test_migration_copies_by_name_not_by_position(engine):
    # Same fields, another order: a positional read would scramble them.
    names = list(engine.dtype.names)
    descr = dict((d[0], d) for d in engine.dtype.descr)
    shuffled = np.dtype([descr[n] for n in reversed(names)])
    old = AreaState("A1", ["M1"], random_records(shuffled, 1, 9),
                    random_records(engine.area_dtype, 1, 10))
    back = AreaState.from_bytes(old.to_bytes(), engine.dtype, engine.area_dtype)
    for name in names:
        assert back.records[name].tobytes() == old.records[name].tobytes(), name
    assert back.area_record.tobytes() == old.area_record.tobytes()


def test_field_whose_type_changed_is_zeroed_not_misread(engine):
    descr = [(d[0], "<f4", *d[2:]) if d[0] == "e_last_reg" else d for d in engine.dtype.descr]
    old_dt = np.dtype(descr)
    old = AreaState("A1", ["M1"], random_records(old_dt, 1, 11),
                    random_records(engine.area_dtype, 1, 12))
    back = AreaState.from_bytes(old.to_bytes(), engine.dtype, engine.area_dtype)
    assert back.records["e_last_reg"][0] == 0.0
    assert back.records["e_last_ts"][0] == old.records["e_last_ts"][0]

"""stream.registry: the meter registry CSV becomes fleet arrays; a bad row stops the load
with its line number; a changed file is re-read."""

from __future__ import annotations

import os

import numpy as np
import pytest

from stream.registry import Registry, RegistryError

HEADER = "meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care,role,rated_current"

GOOD = HEADER + """
M1,C1,A1,A,220,alice,residential,false,false,customer,
M2,C2,A1,ABC,380,alice,small_business,yes,no,customer,
TX-A1,,A1,ABC,380,alice,small_business,false,false,area,400
M3,C3,A2,B,230,bob,residential,true,1,,
M4,C4,A2,3,220,bob,residential,0,y,customer,80
"""


def write(tmp_path, text: str, name: str = "registry.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def csv_with(*rows: str, header: str = HEADER) -> str:
    return "\n".join((header, *rows)) + "\n"


@pytest.fixture
def reg(tmp_path) -> Registry:
    return Registry.load(write(tmp_path, GOOD))


# -- loading ----------------------------------------------------------------------------

def test_load_keeps_meters_in_file_order(reg):
    assert reg.fleet.meter_id == ["M1", "M2", "TX-A1", "M3", "M4"]
    assert len(reg) == 5
    assert reg.row("M3") == 3 and reg.row("nope") is None


def test_area_indices_follow_first_appearance(reg):
    assert reg.fleet.area_id == ["A1", "A2"]
    assert reg.area_index == {"A1": 0, "A2": 1}
    np.testing.assert_array_equal(reg.fleet.area, [0, 0, 0, 1, 1])
    assert reg.fleet.area.dtype == np.int32


def test_phases_are_1_for_single_phase_letters_and_3_for_abc_or_3(reg):
    np.testing.assert_array_equal(reg.fleet.phases, [1, 3, 3, 1, 3])


def test_single_phase_nominal_voltage_is_kept(reg):
    assert reg.fleet.nominal_voltage[0] == 220.0
    assert reg.fleet.nominal_voltage[3] == 230.0


def test_three_phase_line_to_line_nominal_is_converted_to_phase_to_neutral(reg):
    assert reg.fleet.nominal_voltage[1] == pytest.approx(219.4, abs=0.05)
    assert reg.fleet.nominal_voltage[2] == pytest.approx(380 / 3 ** 0.5, abs=0.05)


def test_three_phase_nominal_already_phase_to_neutral_is_kept(reg):
    assert reg.fleet.nominal_voltage[4] == 220.0


def test_empty_nominal_voltage_defaults_to_220():
    r = Registry.from_csv_text(csv_with("M1,C1,A1,A,,am,residential,false,false,,"))
    assert r.fleet.nominal_voltage[0] == 220.0


def test_solar_and_care_are_booleans(reg):
    np.testing.assert_array_equal(reg.fleet.solar, [False, True, False, True, False])
    np.testing.assert_array_equal(reg.fleet.care, [False, False, False, True, True])
    assert reg.fleet.solar.dtype == bool and reg.fleet.care.dtype == bool


def test_tariff_codes_residential_0_small_business_1(reg):
    np.testing.assert_array_equal(reg.fleet.tariff, [0, 1, 1, 0, 0])


def test_rated_current_defaults_to_60_single_phase_and_100_three_phase(reg):
    assert reg.fleet.rated_current[0] == 60.0
    assert reg.fleet.rated_current[1] == 100.0
    assert reg.fleet.rated_current[3] == 60.0


def test_explicit_rated_current_is_used(reg):
    assert reg.fleet.rated_current[2] == 400.0
    assert reg.fleet.rated_current[4] == 80.0


def test_role_area_marks_the_area_meter_and_empty_role_means_customer(reg):
    np.testing.assert_array_equal(reg.fleet.is_area_meter, [False, False, True, False, False])


def test_area_meter_maps_area_index_to_its_fleet_row(reg):
    assert reg.area_meter == {0: 2}


def test_area_meters_lists_customer_meters_only(reg):
    np.testing.assert_array_equal(reg.area_meters(0), [0, 1])
    np.testing.assert_array_equal(reg.area_meters(1), [3, 4])


def test_account_manager_and_customer_ids_are_kept(reg):
    assert reg.account_manager == ["alice", "alice", "alice", "bob", "bob"]
    assert reg.fleet.customer_id == ["C1", "C2", "", "C3", "C4"]


def test_load_records_source_path_and_mtime(tmp_path):
    p = write(tmp_path, GOOD)
    r = Registry.load(p)
    assert r.source == str(p)
    assert r.mtime == os.stat(p).st_mtime


def test_role_and_rated_current_columns_are_optional():
    header = "meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care"
    r = Registry.from_csv_text(csv_with("M1,C1,A1,A,220,am,residential,false,false", header=header))
    assert not r.fleet.is_area_meter[0] and r.fleet.rated_current[0] == 60.0


def test_columns_may_come_in_any_order_with_spaces_and_a_bom(tmp_path):
    text = ("\ufeffcare , solar,tariff,account_manager,nominal_voltage,phase,area_id,customer_id,meter_id\n"
            "true, false ,residential,am,220,c,A9,C9, M9 \n")
    r = Registry.load(write(tmp_path, text))
    assert r.fleet.meter_id == ["M9"]
    assert r.fleet.care[0] and not r.fleet.solar[0] and r.fleet.phases[0] == 1


# -- errors, with line numbers ----------------------------------------------------------

def load_error(text: str) -> str:
    with pytest.raises(RegistryError) as e:
        Registry.from_csv_text(text, "reg.csv")
    return str(e.value)


def test_duplicate_meter_id_names_the_line_of_the_second_one():
    msg = load_error(csv_with("M1,C1,A1,A,220,am,residential,false,false,,",
                              "M2,C2,A1,A,220,am,residential,false,false,,",
                              "M1,C3,A1,A,220,am,residential,false,false,,"))
    assert "reg.csv:4" in msg and "'M1'" in msg and "twice" in msg


def test_missing_required_column_is_named():
    header = "meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar"
    msg = load_error(csv_with("M1,C1,A1,A,220,am,residential,false", header=header))
    assert "reg.csv" in msg and "missing column" in msg and "care" in msg


@pytest.mark.parametrize("phase", ["D", "AB", "2"])
def test_bad_phase_names_line_and_value(phase):
    msg = load_error(csv_with("M1,C1,A1,A,220,am,residential,false,false,,",
                              f"M2,C2,A1,{phase},220,am,residential,false,false,,"))
    assert msg.startswith("reg.csv:3:") and repr(phase) in msg


def test_bad_tariff_names_line_and_value():
    msg = load_error(csv_with("M1,C1,A1,A,220,am,industrial,false,false,,"))
    assert msg.startswith("reg.csv:2:") and "'industrial'" in msg


def test_bad_boolean_names_line_and_value():
    msg = load_error(csv_with("M1,C1,A1,A,220,am,residential,false,false,,",
                              "M2,C2,A1,A,220,am,residential,maybe,false,,"))
    assert msg.startswith("reg.csv:3:") and "'maybe'" in msg and "boolean" in msg


@pytest.mark.parametrize("volts", ["49", "1001", "0"])
def test_nominal_voltage_out_of_range_names_line(volts):
    msg = load_error(csv_with(f"M1,C1,A1,A,{volts},am,residential,false,false,,"))
    assert msg.startswith("reg.csv:2:") and "50-1000" in msg


def test_non_numeric_nominal_voltage_names_line():
    msg = load_error(csv_with("M1,C1,A1,A,230V,am,residential,false,false,,"))
    assert msg.startswith("reg.csv:2:")


def test_empty_customer_id_for_a_customer_meter_names_line():
    msg = load_error(csv_with("M1,C1,A1,A,220,am,residential,false,false,,",
                              "M2,,A1,A,220,am,residential,false,false,customer,"))
    assert msg.startswith("reg.csv:3:") and "customer_id" in msg


def test_unknown_role_names_line():
    msg = load_error(csv_with("M1,C1,A1,A,220,am,residential,false,false,feeder,"))
    assert msg.startswith("reg.csv:2:") and "'feeder'" in msg


TWO_AREA_METERS = csv_with("TX1,,A1,ABC,380,am,small_business,false,false,area,",
                           "M1,C1,A1,A,220,am,residential,false,false,,",
                           "TX2,,A1,ABC,380,am,small_business,false,false,area,")


def test_two_area_meters_in_one_area_is_an_error_naming_the_area():
    msg = load_error(TWO_AREA_METERS)
    assert "'A1'" in msg and "more than one area meter" in msg


def test_two_area_meters_in_one_area_names_the_line_of_the_second():
    assert "reg.csv:4" in load_error(TWO_AREA_METERS)


def test_header_only_file_has_no_meters():
    assert "no meters" in load_error(HEADER + "\n")


def test_missing_file_is_a_registry_error(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        Registry.load(tmp_path / "absent.csv")


# -- reload -----------------------------------------------------------------------------

def test_reload_if_changed_returns_self_when_the_file_is_unchanged(tmp_path):
    p = write(tmp_path, GOOD)
    r = Registry.load(p)
    assert r.reload_if_changed() is r


def test_reload_if_changed_returns_a_new_registry_after_the_file_changes(tmp_path):
    p = write(tmp_path, GOOD)
    r = Registry.load(p)
    p.write_text(GOOD + "M5,C5,A2,A,220,bob,residential,false,false,,\n")
    st = os.stat(p)
    os.utime(p, (st.st_atime, r.mtime + 10))
    new = r.reload_if_changed()
    assert new is not r
    assert new.fleet.meter_id[-1] == "M5" and len(new) == 6
    assert new.mtime == r.mtime + 10
    assert new.reload_if_changed() is new


def test_reload_if_changed_raises_for_a_broken_file_leaving_the_old_registry_intact(tmp_path):
    p = write(tmp_path, GOOD)
    r = Registry.load(p)
    p.write_text(GOOD + "M1,C9,A1,A,220,am,residential,false,false,,\n")
    os.utime(p, (r.mtime + 10, r.mtime + 10))
    with pytest.raises(RegistryError, match="twice"):
        r.reload_if_changed()
    assert len(r) == 5


def test_reload_if_changed_keeps_self_when_the_file_disappears(tmp_path):
    p = write(tmp_path, GOOD)
    r = Registry.load(p)
    p.unlink()
    assert r.reload_if_changed() is r


def test_registry_from_text_never_reloads():
    r = Registry.from_csv_text(GOOD)
    assert r.reload_if_changed() is r

"""The meter registry: which meter belongs to which customer, transformer area and
account manager, and the physical facts the validators and detectors need.

CSV columns (header required, order free)::

    meter_id, customer_id, area_id, phase, nominal_voltage, account_manager, tariff,
    solar, care[, role][, rated_current]

``role`` is ``customer`` (default) or ``area`` for a transformer-area total meter;
``rated_current`` defaults to 60 A (100 A three-phase). A bad row stops the load with
its line number; a reload that fails keeps the previous registry (the worker goes on).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from models.base import Fleet
from stream.csvfile import CsvFile

REQUIRED = ("meter_id", "customer_id", "area_id", "phase", "nominal_voltage",
            "account_manager", "tariff", "solar", "care")
PHASES = {"A": 1, "B": 1, "C": 1, "1": 1, "ABC": 3, "3": 3}
TARIFFS = {"residential": 0, "small_business": 1}
_BOOL = {"true": True, "1": True, "yes": True, "y": True,
         "false": False, "0": False, "no": False, "n": False, "": False}


class RegistryError(ValueError):
    pass


@dataclass
class Registry(CsvFile):
    what = "registry file"
    error = RegistryError

    fleet: Fleet
    account_manager: list[str]
    area_meter: dict[int, int]  # area index -> fleet row of its total meter
    area_index: dict[str, int]
    source: str = ""
    mtime: float = 0.0

    def __len__(self) -> int:
        return len(self.fleet)

    def row(self, meter_id: str) -> int | None:
        return self.fleet.index.get(meter_id)

    def area_meters(self, area: int) -> np.ndarray:
        return np.flatnonzero((self.fleet.area == area) & ~self.fleet.is_area_meter)

    @classmethod
    def from_csv_text(cls, text: str, source: str = "<text>") -> "Registry":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            raise RegistryError(f"{source}: empty registry")
        header = [h.strip() for h in reader.fieldnames]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise RegistryError(f"{source}: missing column(s) {', '.join(missing)}")
        cols: dict[str, list] = {k: [] for k in _COLUMNS}
        area_index: dict[str, int] = {}
        area_meter_line: dict[str, int] = {}
        seen: set[str] = set()
        for lineno, raw in enumerate(reader, start=2):
            where = f"{source}:{lineno}"
            row = _parse_row({(k or "").strip(): (v or "").strip() for k, v in raw.items()},
                             where)
            if row["meter_id"] in seen:
                raise RegistryError(f"{where}: meter_id {row['meter_id']!r} appears twice")
            seen.add(row["meter_id"])
            area_id = row.pop("area_id")
            if row["is_area_meter"]:
                if area_id in area_meter_line:
                    raise RegistryError(f"{where}: area {area_id!r} has more than one area meter "
                                        f"(the other on line {area_meter_line[area_id]})")
                area_meter_line[area_id] = lineno
            row["area"] = area_index.setdefault(area_id, len(area_index))
            for k in _COLUMNS:
                cols[k].append(row[k])
        if not cols["meter_id"]:
            raise RegistryError(f"{source}: no meters")
        fleet = _fleet(cols, list(area_index))
        area_meter = {int(fleet.area[i]): int(i) for i in np.flatnonzero(fleet.is_area_meter)}
        return cls(fleet, cols["account_manager"], area_meter, area_index, source)


_COLUMNS = ("meter_id", "customer_id", "area", "nominal_voltage", "phases", "solar", "care",
            "tariff", "rated_current", "is_area_meter", "account_manager")


def _parse_row(r: dict[str, str], where: str) -> dict:
    """One registry line's fields, checked and converted (``area_id`` still the id)."""
    mid = r["meter_id"]
    if not mid:
        raise RegistryError(f"{where}: empty meter_id")
    role = r.get("role", "") or "customer"
    if role not in ("customer", "area"):
        raise RegistryError(f"{where}: role {role!r} must be customer or area")
    area_id = r["area_id"]
    if not area_id:
        raise RegistryError(f"{where}: empty area_id")
    if area_id.startswith("\x00"):
        # such keys of the worker's state table are its own (stream.worker.state)
        raise RegistryError(f"{where}: area_id may not start with a NUL character")
    if role == "customer" and not r["customer_id"]:
        raise RegistryError(f"{where}: empty customer_id for a customer meter")
    phase = r["phase"].upper() or "A"
    if phase not in PHASES:
        raise RegistryError(f"{where}: phase {r['phase']!r} must be one of A, B, C, ABC")
    tariff = r["tariff"] or "residential"
    if tariff not in TARIFFS:
        raise RegistryError(f"{where}: tariff {tariff!r} must be one of {', '.join(TARIFFS)}")
    try:
        solar = _BOOL[r["solar"].lower()]
        care = _BOOL[r["care"].lower()]
    except KeyError as e:
        raise RegistryError(f"{where}: {e.args[0]!r} is not a boolean") from None
    nominal, rated = _electrical(r, PHASES[phase], where)
    return dict(meter_id=mid, customer_id=r["customer_id"], area_id=area_id,
                nominal_voltage=nominal, phases=PHASES[phase], solar=solar, care=care,
                tariff=TARIFFS[tariff], rated_current=rated, is_area_meter=role == "area",
                account_manager=r["account_manager"])


def _electrical(r: dict[str, str], phases: int, where: str) -> tuple[float, float]:
    """Nominal phase-to-neutral voltage and rated current of a registry line."""
    try:
        nominal = float(r["nominal_voltage"] or 220)
        rated = float(r.get("rated_current") or (100 if phases == 3 else 60))
    except ValueError as e:
        raise RegistryError(f"{where}: {e}") from None
    if not 50 <= nominal <= 1000:
        raise RegistryError(f"{where}: nominal_voltage {nominal} outside 50-1000 V")
    # A three-phase meter's nominal may be given line-to-line (380/400 V); detectors
    # work on phase-to-neutral voltages.
    if phases == 3 and nominal > 300:
        nominal = round(nominal / 3 ** 0.5, 1)
    return nominal, rated


def _fleet(cols: dict[str, list], area_ids: list[str]) -> Fleet:
    return Fleet(
        meter_id=cols["meter_id"], customer_id=cols["customer_id"],
        area=np.asarray(cols["area"], np.int32), area_id=area_ids,
        nominal_voltage=np.asarray(cols["nominal_voltage"], np.float64),
        phases=np.asarray(cols["phases"], np.int8),
        solar=np.asarray(cols["solar"], bool), care=np.asarray(cols["care"], bool),
        tariff=np.asarray(cols["tariff"], np.int8),
        rated_current=np.asarray(cols["rated_current"], np.float64),
        is_area_meter=np.asarray(cols["is_area_meter"], bool),
    )

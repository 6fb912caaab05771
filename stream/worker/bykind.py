"""The kinds of by-area messages: an area's readings (msgpack ``AreaReadings``), its
temperature samples (:mod:`stream.worker.weather`) and inspection outcomes on its meters'
theft alerts (:mod:`stream.outcomes`), told apart by their first bytes. An area's
messages are applied in log order, a run of one kind at a time.
"""

from __future__ import annotations

from stream.schema import OUTCOME_PREFIX, WEATHER_PREFIX

READINGS, WEATHER, OUTCOME = "readings", "weather", "outcome"


def kind_of(value: bytes) -> str:
    if value[:len(WEATHER_PREFIX)] == WEATHER_PREFIX:
        return WEATHER
    if value[:len(OUTCOME_PREFIX)] == OUTCOME_PREFIX:
        return OUTCOME
    return READINGS


def runs_by_kind(values: list[bytes], srcs: list) -> list[tuple[str, list, list]]:
    """Consecutive messages of one kind together: (kind, values, srcs) in log order, so
    readings, temperatures and outcomes reach the area in the order they were published.

    >>> [k for k, _, _ in runs_by_kind([b"r", WEATHER_PREFIX + b"w", b"r", b"r"], [0, 1, 2, 3])]
    ['readings', 'weather', 'readings']
    """
    out: list[tuple[str, list, list]] = []
    for v, s in zip(values, srcs):
        k = kind_of(v)
        if out and out[-1][0] == k:
            out[-1][1].append(v)
            out[-1][2].append(s)
        else:
            out.append((k, [v], [s]))
    return out

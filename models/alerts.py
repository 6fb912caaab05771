"""Alerts: what a finding becomes for the people who act on it.

The id is a hash of (type, subtype, scope, subject, start): the same input always gives
the same id, so a replay or a crash-and-restart reproduces the alert rather than
inventing a second one. Every message of one alert (open, updates, close) shares the id;
``(id, status, detected_at)`` identifies one message, which is what consumers dedupe on.

Messages are plain sentences in English and Chinese (zh-CN) built from the evidence.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import msgspec

from models.base import SEVERITIES, Finding, Fleet

# A "point" finding (a tamper flag) is an alert that opens and needs no close.
STATUS = {"open": "open", "update": "update", "close": "closed", "point": "open"}
_WEEKDAY_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_WEEKDAY_ZH = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]


def enc_hook(obj: Any) -> Any:
    """For JSON encoders: numpy scalars and arrays in evidence become plain values."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def alert_id(type_: str, subtype: str, scope: str, subject_id: str, start: int,
             source: str = "") -> str:
    """The alert's id, the same for its open, updates and close, and for a replay.
    ``source`` tells apart two detectors that may report the same condition of the same
    subject from the same start (the theft rules and the theft model)."""
    key = f"{type_}|{subtype}|{scope}|{subject_id}|{start}".encode()
    if source:
        key += f"|{source}".encode()
    return hashlib.blake2b(key, digest_size=10).hexdigest()


def iso(ts: int, tz=timezone.utc) -> str:
    return datetime.fromtimestamp(int(ts), tz).isoformat()


NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Alert(msgspec.Struct, kw_only=True):
    """One alert message as it goes on the alerts topic: the worker encodes it, the
    notifier decodes it (``msgspec.json.decode(raw, type=Alert)``), so both hold to one
    contract. Fields are encoded in this order; ``context`` is left out when unset.
    Defaults are what a consumer assumes of a message without the field."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    type: NonEmpty
    subtype: NonEmpty
    status: Literal["open", "update", "closed"]
    severity: Literal[SEVERITIES]  # type: ignore[valid-type]  # the tuple's values
    scope: Literal["meter", "area"] = "meter"
    meter_id: str | None = None
    customer_id: str | None = None
    area_id: str | None = None
    start: NonEmpty  # ISO 8601, in the utility's zone
    detected_at: NonEmpty
    score: float | None = None
    # What a detector found; its keys vary per detector (see each detector's docs).
    evidence: dict[str, Any] | None = None
    message: dict[str, str] | None = None  # {"en": ..., "zh-CN": ...}
    transient: bool = False
    # A meter alert's day so far against the customer's habit band (from the engine).
    context: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


def new_alert(f: Finding, fleet: Fleet, tz=timezone.utc) -> Alert:
    """The alert message for a finding.

    A meter alert carries ``context`` (the customer's day so far against their habit
    band, from the engine), so the people who read it see the readings without
    querying another system.
    """
    if f.scope == "meter":
        meter_id = fleet.meter_id[f.subject]
        customer_id = fleet.customer_id[f.subject] or None
        area_id = fleet.area_id[int(fleet.area[f.subject])]
        subject = meter_id
    else:
        meter_id = customer_id = None
        area_id = fleet.area_id[f.subject]
        subject = area_id
    en, zh = message(f)
    return Alert(
        id=alert_id(f.type, f.subtype, f.scope, subject, f.start,
                    (f.evidence or {}).get("model", "")),
        type=f.type, subtype=f.subtype, status=STATUS.get(f.action, f.action),
        severity=f.severity, scope=f.scope,
        meter_id=meter_id, customer_id=customer_id, area_id=area_id,
        start=iso(f.start, tz), detected_at=iso(f.ts, tz),
        score=round(float(f.score), 4), evidence=f.evidence,
        message={"en": en, "zh-CN": zh},
        transient=f.action == "point",
        context=msgspec.UNSET if f.context is None else f.context)


def record(a: Alert) -> dict[str, Any]:
    """The alert as a plain dict with the keys of its JSON (for code that reads
    records: the backtest's results, the notifier's store)."""
    d = msgspec.structs.asdict(a)
    if a.context is msgspec.UNSET:
        del d["context"]
    return d


def to_alert(f: Finding, fleet: Fleet, tz=timezone.utc) -> dict[str, Any]:
    """The alert record (a JSON-ready dict) for a finding: :func:`new_alert` as a dict."""
    return record(new_alert(f, fleet, tz))


def evidence_rows(ev: Any, prefix: str = "") -> list[tuple[str, str]]:
    """The evidence as (key, value) rows for people to read, nested dicts with dotted
    keys: one flattening for the console's pages and the notifier's messages, so an
    alert reads the same in both.

    >>> evidence_rows({"a": {"b": 0.1 + 0.2, "c": None}, "ok": True})
    [('a.b', '0.3'), ('a.c', '—'), ('ok', 'true')]
    """
    rows: list[tuple[str, str]] = []
    if not isinstance(ev, dict):
        return [(prefix or "value", format_value(ev))]
    for k, v in ev.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            rows += evidence_rows(v, key)
        else:
            rows.append((key, format_value(v)))
    return rows


def format_value(v: Any) -> str:
    """One evidence value as shown: floats to 6 significant digits, long lists cut."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        items = [format_value(x) for x in v[:12]]
        return ", ".join(items) + (f", … ({len(v)} in all)" if len(v) > 12 else "")
    return str(v)


def _g(ev: dict, k: str, default: Any = "?") -> Any:
    v = ev.get(k, ev.get("indicators", {}).get(k, default) if isinstance(ev.get("indicators"), dict) else default)
    return default if v is None else v


def message(f: Finding) -> tuple[str, str]:
    """The alert's message in English and Chinese, from its evidence."""
    t, s = f.type, f.subtype
    if f.action == "close":
        return (f"Cleared: {t.replace('_', ' ')} ({s.replace('_', ' ')}) is back to normal.",
                f"已恢复：{ZH_NAMES.get((t, s), t)}已恢复正常。")
    family = _MESSAGES.get(t)
    text = family(f, f.evidence, t, s) if family else None
    return text or (f"{t}/{s}", f"{t}/{s}")


def _surge(f: Finding, ev: dict, t: str, s: str) -> tuple[str, str] | None:
    if (t, s) == ("surge", "interval"):
        return (f"Usage jumped to {_g(ev, 'observed_kw')} kW; usually {_g(ev, 'expected_kw')} "
                f"± {_g(ev, 'spread_kw')} kW at this time ({_g(ev, 'ratio')}x).",
                f"用电功率突增至 {_g(ev, 'observed_kw')} kW，该时段通常为 {_g(ev, 'expected_kw')} "
                f"± {_g(ev, 'spread_kw')} kW（{_g(ev, 'ratio')} 倍）。")
    if (t, s) == ("surge", "daily"):
        wd = int(_g(ev, "weekday", 0)) % 7
        # date.toordinal() % 7: Monday=1 ... Sunday=0
        w = (wd - 1) % 7
        return (f"Today {_g(ev, 'today_kwh')} kWh; usually {_g(ev, 'usual_day_kwh')} ± "
                f"{_g(ev, 'spread_kwh')} kWh on a {_WEEKDAY_EN[w]} ({_g(ev, 'ratio')}x).",
                f"今日用电 {_g(ev, 'today_kwh')} kWh；{_WEEKDAY_ZH[w]}通常为 "
                f"{_g(ev, 'usual_day_kwh')} ± {_g(ev, 'spread_kwh')} kWh（{_g(ev, 'ratio')} 倍）。")
    if (t, s) == ("surge", "bill_projection"):
        return (f"This month is heading for {_g(ev, 'projected_kwh')} kWh against a usual "
                f"{_g(ev, 'usual_month_kwh')} kWh ({_g(ev, 'ratio')}x) after "
                f"{_g(ev, 'days_elapsed')} days.",
                f"本月预计用电 {_g(ev, 'projected_kwh')} kWh，通常为 {_g(ev, 'usual_month_kwh')} kWh"
                f"（{_g(ev, 'ratio')} 倍，已过 {_g(ev, 'days_elapsed')} 天）。")
    return None


def _habit(f: Finding, ev: dict, t: str, s: str) -> tuple[str, str]:
    if s == "vacancy":
        return (f"Only base load since {_g(ev, 'since_day')} ({_g(ev, 'recent_day_kwh')} kWh/day "
                f"against a usual {_g(ev, 'usual_day_kwh')}): the premises may be empty.",
                f"自 {_g(ev, 'since_day')} 起仅有基础负荷（每日 {_g(ev, 'recent_day_kwh')} kWh，"
                f"通常 {_g(ev, 'usual_day_kwh')} kWh），可能无人居住。")
    if s == "schedule":
        return (f"Daily routine shifted by {_g(ev, 'shift_hours')} h since {_g(ev, 'since_day')}.",
                f"自 {_g(ev, 'since_day')} 起作息时间偏移 {_g(ev, 'shift_hours')} 小时。")
    word_en = "up" if s == "increase" else "down"
    word_zh = "上升" if s == "increase" else "下降"
    return (f"Usage {word_en} {abs(float(_g(ev, 'change_pct', 0)))}% since {_g(ev, 'since_day')}: "
            f"{_g(ev, 'recent_day_kwh')} kWh/day against a usual {_g(ev, 'usual_day_kwh')}.",
            f"自 {_g(ev, 'since_day')} 起用电{word_zh} {abs(float(_g(ev, 'change_pct', 0)))}%："
            f"每日 {_g(ev, 'recent_day_kwh')} kWh，通常 {_g(ev, 'usual_day_kwh')} kWh。")


def _theft(f: Finding, ev: dict, t: str, s: str) -> tuple[str, str]:
    risk = _g(ev, "risk", f.score)
    en = {
        "consumption_drop": "Sustained drop in metered use while area peers did not drop",
        "profile_distortion": "Daily load shape distorted (flattened, reversed, zeroed or random)",
        "energy_mismatch": f"Metered {_g(ev, 'metered_kwh')} kWh but V×I×pf implies "
                           f"{_g(ev, 'implied_kwh')} kWh: meter bypassed or slowed?",
        "zero_with_voltage": "Zero energy for hours while voltage and current are present",
        "tamper_event": f"Tamper flag from the meter: {', '.join(_g(ev, 'events', []))}",
        "reverse_flow": "Reverse energy flow on a customer without solar",
        "current_imbalance": f"Live {_g(ev, 'live_a')} A vs neutral {_g(ev, 'neutral_a')} A",
        "area_loss": f"Area line loss {_g(ev, 'loss_rate')} vs normal {_g(ev, 'normal_loss_rate')}",
    }[s]
    zh = {
        "consumption_drop": "计量用电量持续下降，而同台区用户未下降",
        "profile_distortion": "日负荷曲线异常（平直、反转、清零或随机）",
        "energy_mismatch": f"计量 {_g(ev, 'metered_kwh')} kWh，但电压×电流×功率因数推算为 "
                           f"{_g(ev, 'implied_kwh')} kWh，疑似绕表或慢表",
        "zero_with_voltage": "有电压有电流但电量长时间为零",
        "tamper_event": f"电能表上报防窃电事件：{', '.join(_g(ev, 'events', []))}",
        "reverse_flow": "无光伏用户出现反向电量",
        "current_imbalance": f"火线电流 {_g(ev, 'live_a')} A，零线电流 {_g(ev, 'neutral_a')} A，不平衡",
        "area_loss": f"台区线损率 {_g(ev, 'loss_rate')}，正常为 {_g(ev, 'normal_loss_rate')}",
    }[s]
    return f"{en} (risk {risk}).", f"{zh}（风险 {risk}）。"


def _voltage(f: Finding, ev: dict, t: str, s: str) -> tuple[str, str]:
    where_en = "across the area" if f.scope == "area" else "at this meter"
    where_zh = "整个台区" if f.scope == "area" else "该表计"
    if s == "noncompliant_period":
        pct = lambda k: round(100 * float(_g(ev, k, 0)), 2)  # noqa: E731
        return (f"Supply voltage {where_en} fails {_g(ev, 'standard')} for the period "
                f"{_g(ev, 'period')}: {pct('share_within')}% of the measured time within the "
                f"limits ({pct('required_share')}% required), {pct('coverage')}% of the period measured.",
                f"{where_zh}供电电压在 {_g(ev, 'period')} 统计周期内不符合 {_g(ev, 'standard')}："
                f"合格时间占比 {pct('share_within')}%（要求 {pct('required_share')}%），"
                f"已测量 {pct('coverage')}%。")
    return (f"{s.capitalize()} {where_en}: {_g(ev, 'observed_v')} V against the "
            f"{_g(ev, 'standard')} limit {_g(ev, 'limit_v')} V (nominal {_g(ev, 'nominal_v', _g(ev, 'nominal'))} V).",
            f"{where_zh}{ZH_NAMES[(t, s)]}：{_g(ev, 'observed_v')} V，{_g(ev, 'standard')} "
            f"限值 {_g(ev, 'limit_v')} V。")


def _service(f: Finding, ev: dict, t: str, s: str) -> tuple[str, str] | None:
    """Outages, communication gaps, data quality and inactivity."""
    if t == "outage":
        if f.scope == "area":
            return (f"Outage across the area: {_g(ev, 'meters_affected')} of "
                    f"{_g(ev, 'meters_reporting')} meters lost power.",
                    f"台区停电：{_g(ev, 'meters_reporting')} 块表中 {_g(ev, 'meters_affected')} 块失电。")
        return ("Power failure reported by the meter.", "电能表上报停电。")
    if t == "comm_gap":
        return (f"No readings for {_g(ev, 'missing_intervals')} intervals.",
                f"连续 {_g(ev, 'missing_intervals')} 个周期未收到数据。")
    if t == "data_quality":
        return (f"Data quality: {s.replace('_', ' ')} ({_g(ev, 'detail', '')}).",
                f"数据质量：{ZH_NAMES.get((t, s), s)}（{_g(ev, 'detail', '')}）。")
    if t == "inactivity":
        return (f"No activity for {_g(ev, 'idle_hours')} h at a time this customer is usually "
                f"active: someone should check on them.",
                f"该用户在通常活跃时段已 {_g(ev, 'idle_hours')} 小时无用电活动，请联系确认其安全。")
    return None


_MESSAGES = {"surge": _surge, "habit_change": _habit, "theft": _theft, "voltage": _voltage,
             "outage": _service, "comm_gap": _service, "data_quality": _service,
             "inactivity": _service}


# Chinese names of alert types: in messages here, and in the notifier's subjects.
ZH_NAMES = {
    ("surge", "interval"): "用电突增", ("surge", "daily"): "日用电突增",
    ("surge", "bill_projection"): "电费预警", ("habit_change", "increase"): "用电习惯上升",
    ("habit_change", "decrease"): "用电习惯下降", ("habit_change", "vacancy"): "疑似空置",
    ("habit_change", "schedule"): "作息变化", ("theft", "consumption_drop"): "用电量骤降",
    ("theft", "profile_distortion"): "负荷曲线异常", ("theft", "energy_mismatch"): "电量不符",
    ("theft", "zero_with_voltage"): "有压无量", ("theft", "tamper_event"): "开盖/磁干扰",
    ("theft", "reverse_flow"): "反向电量", ("theft", "current_imbalance"): "零火线电流不平衡",
    ("theft", "area_loss"): "台区线损异常", ("voltage", "undervoltage"): "低电压",
    ("voltage", "overvoltage"): "过电压", ("voltage", "sag"): "电压暂降",
    ("voltage", "swell"): "电压暂升", ("voltage", "interruption"): "供电中断",
    ("voltage", "noncompliant_period"): "电压合格率不达标",
    ("outage", "power_fail"): "停电", ("outage", "area"): "台区停电",
    ("comm_gap", "meter"): "通信中断", ("data_quality", "late"): "数据迟到",
    ("data_quality", "register_reset"): "表码复位", ("inactivity", "care"): "关爱用户无活动",
}

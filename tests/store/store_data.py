"""Alert messages as the pipeline writes them, for the store's tests."""

from __future__ import annotations


def alert(id="a1", status="open", detected="2026-01-05T18:00:00+00:00", severity="warning",
          **kw):
    a = {"id": id, "type": "surge", "subtype": "daily", "status": status,
         "severity": severity, "scope": "meter", "meter_id": "m1", "customer_id": "c1",
         "area_id": "A", "start": "2026-01-05T00:00:00+00:00", "detected_at": detected,
         "score": 3.1, "evidence": {"today_kwh": 38.2},
         "message": {"en": "Today 38.2 kWh", "zh-CN": "今日 38.2 kWh"}}
    a.update(kw)
    return a


def model_alert(id="t1", **kw):
    """A theft alert of the fleet model, with the evidence the model writes."""
    ev = {"model": "fleet_self_supervised", "attack_shape": "h2", "risk": 0.82,
          "log_odds": 3.4, "indicators": {"level": -0.61, "shape_cor": 0.42}}
    return alert(id=id, type="theft", subtype="consumption_drop", evidence=ev, **kw)

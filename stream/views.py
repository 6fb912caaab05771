"""Web views on the worker: Prometheus metrics, a health check, and a customer's habit
profile read from the area table (for the console's customer and alert pages)."""

from __future__ import annotations

from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable

from models.habit import habit_context, habit_profile
from stream import metrics as M
from stream.app import Runtime


def register(rt: Runtime) -> None:
    app = rt.app
    M.register_faust(app)

    @app.page("/metrics")
    async def metrics(web, request):
        # ``?name[]=...`` restricts the exposition to those series, as prometheus_client's
        # own exporters do (the pipeline benchmark polls a few counters 4 times a second).
        names = request.query.getall("name[]", [])
        return web.bytes(M.exposition(names or None), content_type="text/plain; version=0.0.4")

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok", "app": rt.settings.app_id,
                         "registry_meters": len(rt.registry),
                         "standard": rt.settings.voltage_standard})

    @app.page("/meters/{meter_id}/profile")
    async def profile(view, request, meter_id: str):
        fleet = rt.registry.fleet
        i = fleet.index.get(meter_id)
        if i is None or fleet.is_area_meter[i]:
            return view.json({"error": "unknown meter"}, status=404)
        area_id = fleet.area_id[int(fleet.area[i])]
        key = area_id.encode()
        # The area's state lives on the worker that owns its partition; Faust forwards
        # the request there (and raises SameNode when that is us).
        try:
            return await app.router.route_req(rt.tables.areas.name, key, view.web, request)
        except SameNode:
            pass
        except ServiceUnavailable:
            return view.json({"error": "partition owner unknown (rebalancing)"}, status=503)
        blob = rt.tables.areas.get(key)
        if blob is None:
            return view.json({"error": "no readings yet"}, status=404)
        state = rt.processor.load_state(blob, area_id)
        if meter_id not in state.meter_ids:
            return view.json({"error": "no readings yet"}, status=404)
        row = state.records[state.meter_ids.index(meter_id)]
        ctx = habit_context(row)
        return view.json({"meter_id": meter_id, "customer_id": fleet.customer_id[i] or None,
                          "area_id": area_id, "profile": habit_profile(row),
                          "today": {"day": ctx["day"], "day_type": ctx["day_type"],
                                    "kwh": ctx["kwh"]},
                          "recent_kwh": ctx["recent_kwh"]})

"""Web views on the worker: Prometheus metrics, a health check, a customer's habit
profile and voltage compliance, and an area's voltage compliance, read from the area
table (for the console's customer, alert and area pages)."""

from __future__ import annotations

from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable

from models import compliance as C
from models.habit import habit_context, habit_profile
from stream.worker import metrics as M
from stream.worker.runtime import Runtime


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

    async def area_state(view, request, area_id: str):
        """The area's state, or the response to give: the area's state lives on the worker
        that owns its partition; Faust forwards the request there (and raises SameNode
        when that is us)."""
        key = area_id.encode()
        try:
            return None, await app.router.route_req(rt.tables.areas.name, key, view.web, request)
        except SameNode:
            pass
        except ServiceUnavailable:
            return None, view.json({"error": "partition owner unknown (rebalancing)"}, status=503)
        blob = rt.tables.areas.get(key)
        if blob is None:
            return None, view.json({"error": "no readings yet"}, status=404)
        return rt.processor.load_state(blob, area_id), None

    @app.page("/areas/{area_id}/compliance")
    async def area_compliance(view, request, area_id: str):
        fleet = rt.registry.fleet
        if area_id not in fleet.area_id:
            return view.json({"error": "unknown area"}, status=404)
        state, answer = await area_state(view, request, area_id)
        if state is None:
            return answer
        rows = [(m, fleet.customer_id[fleet.index[m]] or None, state.records[k])
                for k, m in enumerate(state.meter_ids)
                if m in fleet.index and not fleet.is_area_meter[fleet.index[m]]]
        doc = C.area_doc(rt.processor.engine.compliance, state.area_record[0], rows)
        return view.json({"area_id": area_id} | doc)

    @app.page("/meters/{meter_id}/profile")
    async def profile(view, request, meter_id: str):
        fleet = rt.registry.fleet
        i = fleet.index.get(meter_id)
        if i is None or fleet.is_area_meter[i]:
            return view.json({"error": "unknown meter"}, status=404)
        area_id = fleet.area_id[int(fleet.area[i])]
        state, answer = await area_state(view, request, area_id)
        if state is None:
            return answer
        if meter_id not in state.meter_ids:
            return view.json({"error": "no readings yet"}, status=404)
        row = state.records[state.meter_ids.index(meter_id)]
        ctx = habit_context(row)
        return view.json({"meter_id": meter_id, "customer_id": fleet.customer_id[i] or None,
                          "area_id": area_id, "profile": habit_profile(row),
                          "today": {"day": ctx["day"], "day_type": ctx["day_type"],
                                    "kwh": ctx["kwh"]},
                          "recent_kwh": ctx["recent_kwh"],
                          "compliance": C.meter_doc(rt.processor.engine.compliance, row)})

"""Web views on the worker: Prometheus metrics and a health check."""

from __future__ import annotations

from stream import metrics as M
from stream.app import Runtime


def register(rt: Runtime) -> None:
    app = rt.app

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(M.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok", "app": rt.settings.app_id,
                         "registry_meters": len(rt.registry),
                         "standard": rt.settings.voltage_standard})

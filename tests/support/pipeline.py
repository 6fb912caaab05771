"""What every test that runs real meterwatch processes needs: free loopback ports, and
a worker environment isolated on the shared broker by its own app id and topic names."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

TOPIC_KINDS = ("readings", "rejected", "byarea", "alerts", "dead")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_names() -> tuple[str, dict[str, str]]:
    """A fresh app id and topic names, so tests share one broker without meeting."""
    tag = uuid.uuid4().hex[:8]
    return f"mw-{tag}", {k: f"{k}-{tag}" for k in TOPIC_KINDS}


def worker_env(*, bootstrap: str, app_id: str, topics: dict[str, str], registry: Path,
               data_dir: Path, web_port: int, **extra: str) -> dict[str, str]:
    """The process environment of a worker: none of the caller's METERWATCH_* settings."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
    e.update(METERWATCH_BROKER=bootstrap, METERWATCH_APP_ID=app_id,
             METERWATCH_READINGS_TOPIC=topics["readings"],
             METERWATCH_REJECTED_TOPIC=topics["rejected"],
             METERWATCH_BY_AREA_TOPIC=topics["byarea"],
             METERWATCH_ALERTS_TOPIC=topics["alerts"],
             METERWATCH_DEADLETTER_TOPIC=topics["dead"],
             METERWATCH_REGISTRY=str(registry), METERWATCH_DATA_DIR=str(data_dir),
             METERWATCH_WEB_PORT=str(web_port), METERWATCH_LOG_LEVEL="warning", **extra)
    return e

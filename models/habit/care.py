"""Care customers (``inactivity/care``): hours at base load through hours when the home
is normally active, which for someone living alone may mean they need help.

State: ``h_inact`` (consecutive normally-active intervals at base load), read with the
profile's ``h_mu`` and ``h_base``.
"""

from __future__ import annotations

import numpy as np

from models.habit.common import INACT


class CareFamily:
    """Mixin of :class:`models.habit.HabitDetector`: inactivity of care customers."""

    def _care(self, st, batch, fleet, p, mu, hours, trusted, out) -> None:
        cfg = self.config
        care = fleet.care[batch.meter] & trusted
        active = mu > np.maximum(2.5 * st["h_base"], st["h_base"] + 0.15)
        idle = p <= np.maximum(1.3 * st["h_base"], st["h_base"] + 0.05)
        st["h_inact"] = np.where(care & active & idle, st["h_inact"] + 1,
                                 np.where(care & active, 0, st["h_inact"]))
        need = int(round(cfg.inactivity_h * 3600 / max(int(batch.interval_s.max()), 1)))
        inact = care & (st["h_inact"] >= need)
        back = care & active & ~idle
        self._track(st, INACT, inact, batch, "inactivity", "care", out, magnitude=None,
                    start=batch.ts - (st["h_inact"].astype(np.int64) - 1) * batch.interval_s,
                    evidence=lambda i: {"idle_hours": round(float(st["h_inact"][i]) * hours[i], 1),
                                        "observed_kw": round(p[i], 3),
                                        "usual_kw": round(mu[i], 3),
                                        "base_kw": round(float(st["h_base"][i]), 3)},
                    score=lambda i: float(st["h_inact"][i]) / max(need, 1),
                    severity="critical", clear=back)

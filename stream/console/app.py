"""The account manager console: an aiohttp application over the alert store.

``make_app(settings, store, registry)`` builds it; ``meterwatch console`` runs it.

Pages (all server-rendered, no JavaScript):

==============================  =========================================================
``/login``, ``/logout``         sign in / out (rate limited, CSRF-protected)
``/alerts``                     inbox: open alerts, most severe then newest first;
                                filters ``state`` (open|new|acknowledged|resolved|all),
                                ``type``, ``area``; ``page``; ``lang=zh-CN``
``/alerts/{id}``                evidence, message, chart, messages, notes, actions
``/alerts/{id}/acknowledge``    POST
``/alerts/{id}/resolve``        POST ``outcome`` (one of ``stream.store.OUTCOMES``), ``note``
``/alerts/{id}/notes``          POST ``text``
``/customers/{id}``             registry facts, usual day (live or from the latest
                                alert), recent alerts, notes; POST ``.../notes``
``/worklist``                   field crews' work list: open theft suspicions ranked by
                                risk x estimated unbilled energy (``stream.console.worklist``)
``/worklist.csv``               the same list (same scope and order) as CSV
``/worklist/{id}``              a suspicion's evidence pack: daily energy around the onset,
                                attack shape, corroboration, peers, indicators
``/audit``                      audit log (engineer, admin)
``/admin/users``                accounts (admin)
``/metrics``, ``/health``       Prometheus metrics, liveness (no login; no personal data)
==============================  =========================================================

Who sees what: a manager sees the alerts whose ``manager_id`` is theirs and the customers
with a meter (registry ``account_manager``) or an alert of theirs; on a customer page only
their own meters (and their live profiles), alerts and notes. Anything else answers 404
after the same queries as an id that does not exist, so ids cannot be probed. Control
room, engineers and admins see all.

Logs carry route templates (``/customers/{customer_id}``), never the ids in a URL, and
never customer ids or secrets.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import io
import logging
import re
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Callable
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import aiohttp
import jinja2
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from sqlalchemy.exc import IntegrityError

from models.alerts import evidence_rows
from models.base import ALERT_TYPES
from stream.console import compliance as CV
from stream.console import profile as P
from stream.console import queries as Q
from stream.console import worklist as WL
from stream.console.auth import (CSRF_FIELD, SESSION_TTL_S, ANON_TTL_S, RateLimiter,
                                 SessionCodec, User, cookie_name, csrf_ok)
from stream.console.metrics import ConsoleMetrics
from stream.settings import Settings
from stream.store import OUTCOMES, ROLES, AlertStore, NotFound

log = logging.getLogger("meterwatch.console")

PAGE_SIZE = 50
MAX_NOTE = 5000
MAX_PAGE = 1_000_000
MAX_WORKLIST_ROWS = 500  # on the page; the CSV has them all
STATE_FILTERS = {"open": ("new", "acknowledged"), "new": ("new",),
                 "acknowledged": ("acknowledged",), "resolved": ("resolved",), "all": None}
STATE_OPTIONS = [("open", "open (new + acknowledged)"), ("new", "new"),
                 ("acknowledged", "acknowledged"), ("resolved", "resolved"), ("all", "all")]
FLASH = {"acknowledged": "Alert acknowledged.", "resolved": "Alert resolved.",
         "note": "Note added.", "user_added": "User added.", "password": "Password set.",
         "disabled": "User disabled.", "enabled": "User enabled."}
PUBLIC = {"/login", "/static/console.css", "/metrics", "/health"}
USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
ID_RE = r"[^/]{1,200}"  # one path segment, as sent (percent-encoded): any id

CONSOLE: web.AppKey["Console"] = web.AppKey("console", object)  # type: ignore[arg-type]
# Per-request storage keys (typed keys where this aiohttp has them, >= 3.13).
_RequestKey = getattr(web, "RequestKey", None)


def _rkey(name: str):
    return _RequestKey(name, object) if _RequestKey is not None else name


SESSION_KEY = _rkey("mw.session")
SET_SESSION_KEY = _rkey("mw.set_session")
USER_KEY = _rkey("mw.user")


# ---- state --------------------------------------------------------------------------------

@dataclass
class MeterRow:
    meter_id: str
    area_id: str
    phases: int
    nominal_v: float
    tariff: str
    solar: bool
    care: bool
    account_manager: str


class Console:
    """Everything the handlers share: settings, store, registry, sessions, metrics."""

    def __init__(self, settings: Settings, store: AlertStore, registry=None) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.codec = SessionCodec(settings.session_secret)
        self.cookie = cookie_name(settings.cookie_secure)
        self.limiter = RateLimiter(max_failures=5, window_s=300.0)
        self.metrics = ConsoleMetrics(store)
        self.http: aiohttp.ClientSession | None = None
        self._index: tuple[int, dict[str, list[MeterRow]], dict[str, int]] | None = None
        self.tz = ZoneInfo(settings.timezone)
        # Pages are package data (stream/console/templates/), autoescaped. No JavaScript:
        # forms post, links navigate, charts are inline SVG. An id in a link or form
        # action always goes through the ``seg`` filter (one percent-encoded path
        # segment), never raw and never through ``urlencode``, which leaves "/" as it is.
        env = jinja2.Environment(loader=jinja2.PackageLoader("stream.console"), autoescape=True,
                                 undefined=jinja2.StrictUndefined, trim_blocks=True,
                                 lstrip_blocks=True)
        env.filters["ts"] = self._fmt_ts
        env.filters["isots"] = self._fmt_iso
        env.filters["message"] = _message
        env.filters["seg"] = _seg
        env.filters["num"] = _num
        self.jinja = env

    # -- helpers
    async def db(self, fn: Callable, *args: Any, **kw: Any) -> Any:
        """Run a (blocking) store call off the event loop."""
        return await asyncio.to_thread(functools.partial(fn, *args, **kw))

    def _fmt_ts(self, t: float | None, seconds: bool = False) -> str:
        if t is None:
            return "—"
        d = datetime.fromtimestamp(float(t), timezone.utc).astimezone(self.tz)
        return d.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    def _fmt_iso(self, s: str | None) -> str:
        if not s:
            return "—"
        try:
            return self._fmt_ts(datetime.fromisoformat(s).timestamp())
        except ValueError:
            return s

    async def meters_index(self) -> tuple[dict[str, list[MeterRow]], dict[str, int]]:
        """customer id -> its meters, and meter id -> phases, from the (reloaded) registry."""
        reg = self.registry
        if reg is None:
            return {}, {}
        try:
            reg = await self.db(reg.reload_if_changed)
        except Exception as e:  # a broken edit of the file keeps the previous registry
            log.warning("registry reload failed, keeping the previous one (%s)", type(e).__name__)
        self.registry = reg
        if self._index is None or self._index[0] != id(reg):
            f = reg.fleet
            by_customer: dict[str, list[MeterRow]] = {}
            phases: dict[str, int] = {}
            for i, mid in enumerate(f.meter_id):
                phases[mid] = int(f.phases[i])
                if f.is_area_meter[i]:
                    continue
                by_customer.setdefault(f.customer_id[i], []).append(MeterRow(
                    meter_id=mid, area_id=f.area_id[int(f.area[i])], phases=int(f.phases[i]),
                    nominal_v=float(f.nominal_voltage[i]),
                    tariff="small_business" if int(f.tariff[i]) == 1 else "residential",
                    solar=bool(f.solar[i]), care=bool(f.care[i]),
                    account_manager=reg.account_manager[i]))
            self._index = (id(reg), by_customer, phases)
        return self._index[1], self._index[2]

    def render(self, request: web.Request, template: str, *, status: int = 200,
               headers: dict[str, str] | None = None, **ctx: Any) -> web.Response:
        lang = _lang(request)
        base = dict(user=request.get(USER_KEY), csrf=request[SESSION_KEY]["csrf"], lang=lang,
                    lang_q="?lang=zh-CN" if lang == "zh-CN" else "", lang_url=None,
                    flash=FLASH.get(request.query.get("done", "")), nav="", title="Console")
        base.update(ctx)
        html = self.jinja.get_template(template).render(**base)
        return web.Response(text=html, status=status, content_type="text/html",
                            charset="utf-8", headers=headers)


def _lang(request: web.Request) -> str:
    return "zh-CN" if request.query.get("lang") == "zh-CN" else "en"


def _lang_url(request: web.Request) -> str:
    q = {k: v for k, v in request.query.items() if k not in ("lang", "done")}
    if _lang(request) != "zh-CN":
        q["lang"] = "zh-CN"
    # The path as sent (still percent-encoded): a decoded id could hold "/" or "?".
    return request.rel_url.raw_path + ("?" + urlencode(q) if q else "")


def _message(record: dict[str, Any], lang: str = "en") -> str:
    m = (record or {}).get("message") or {}
    if not isinstance(m, dict):
        return str(m)
    return m.get(lang) or m.get("en") or ""


def _route(request: web.BaseRequest) -> str:
    """The matched route's template: ``/customers/{customer_id}``, never the id itself."""
    try:
        info = request.match_info  # type: ignore[attr-defined]
        res = info.route.resource
        if res is not None:
            return res.canonical
    except Exception:
        pass
    return "<unmatched>"


def _num(v: float | None, digits: int = 1) -> str:
    """A figure for a page: grouped thousands, ``digits`` decimals; "—" when unknown."""
    return "—" if v is None else f"{v:,.{digits}f}"


def _seg(value: Any) -> str:
    """An id as one URL path segment: every character but letters, digits and ``-._~``
    percent-encoded, so an id holding "/", "?", "#" or "../" stays one segment."""
    return quote(str(value), safe="")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


# A path on this origin: one "/" then printable ASCII, never "/" or "\\" next (browsers
# read "//host", "/\\host" as another host), no backslash anywhere, and no control
# character or whitespace (browsers drop tabs and newlines: "/\t/host" is "//host").
SAFE_NEXT_RE = re.compile(r"/(?![/\\])[\x21-\x5b\x5d-\x7e]{0,510}")


def _safe_next(v: str | None) -> str:
    """``v`` if it is a same-origin path to go to after login, else the inbox."""
    if isinstance(v, str) and SAFE_NEXT_RE.fullmatch(v):
        return v
    return "/alerts"


class AccessLogger(AbstractAccessLogger):
    """Method, route template, status, time and user: no ids from URLs, no query strings."""

    def log(self, request, response, time_s):  # noqa: D102
        user = request.get(USER_KEY)
        self.logger.info("%s %s %s %s %.3fs %s", request.remote, request.method, _route(request),
                         response.status, time_s, user.username if user else "-")


# ---- middlewares ---------------------------------------------------------------------------

@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except web.HTTPException:
        raise
    except Exception as e:  # no ids in logs: frames only, not the exception's message
        log.error("unhandled %s in %s %s\n%s", type(e).__qualname__, request.method,
                  _route(request), "".join(traceback.format_tb(e.__traceback__)))
        resp = web.Response(status=500, text="500 Internal Server Error",
                            content_type="text/plain")
    h = resp.headers
    h.setdefault("Content-Security-Policy",
                 "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                 "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    if resp.content_type == "text/html":
        h.setdefault("Cache-Control", "no-store")
    return resp


@web.middleware
async def sessions(request: web.Request, handler) -> web.StreamResponse:
    c: Console = request.app[CONSOLE]
    sess = c.codec.loads(request.cookies.get(c.cookie))
    user = None
    if sess is not None and sess.get("u"):
        row = await c.db(Q.session_user, c.store, sess["u"])
        if _session_valid(c, sess, row):
            user = User(row["username"], row["role"], row["manager_id"])
        else:
            sess = None  # account gone or disabled, password changed, signed out: it ends
    fresh = sess is None
    if fresh:
        sess = c.codec.new_session()
        request[SET_SESSION_KEY] = sess
    request[SESSION_KEY] = sess
    request[USER_KEY] = user
    try:
        resp = await _guarded(request, handler, c, user, fresh)
    except web.HTTPException as e:
        resp = _error_page(c, request, e)
    out = request.get(SET_SESSION_KEY)
    if out is not None:
        resp.set_cookie(c.cookie, c.codec.dumps(out),
                        max_age=SESSION_TTL_S if out.get("u") else ANON_TTL_S, path="/",
                        secure=c.settings.cookie_secure, httponly=True, samesite="Strict")
    return resp


def _session_valid(c: Console, sess: dict[str, Any], row: dict[str, Any] | None) -> bool:
    """The account exists, is enabled, and neither its password nor its session
    generation (bumped by logout, password change, disabling) changed since login."""
    if row is None or row["disabled"] or not isinstance(sess.get("pv"), str):
        return False
    if sess.get("g") != row["session_gen"]:
        return False
    return hmac.compare_digest(sess["pv"], c.codec.password_fingerprint(row["password_hash"]))


async def _guarded(request: web.Request, handler, c: Console, user: User | None,
                   fresh: bool) -> web.StreamResponse:
    public = request.path in PUBLIC
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        form = await _read_form(request)
        if fresh or not csrf_ok(request[SESSION_KEY], form.get(CSRF_FIELD)):
            log.warning("CSRF check failed: %s %s", request.method, _route(request))
            raise web.HTTPForbidden(reason="CSRF check failed",
                                    text="The form was stale or did not come from this console. "
                                         "Reload the page and try again.")
    if user is None and not public:
        if request.method == "GET":
            return _redirect("/login?" + urlencode({"next": request.path_qs}))
        return _redirect("/login")
    return await handler(request)


async def _read_form(request: web.Request):
    """The POSTed form (aiohttp keeps it for the handler), or 400 if it cannot be decoded:
    bytes that are not valid in its charset, or a charset Python does not know."""
    try:
        return await request.post()
    except (ValueError, LookupError) as e:  # UnicodeDecodeError is a ValueError
        log.info("unreadable form: %s %s (%s)", request.method, _route(request),
                 type(e).__name__)
        raise web.HTTPBadRequest(text="The form could not be read: send it as UTF-8 "
                                      "(application/x-www-form-urlencoded or multipart).")


def _error_page(c: Console, request: web.Request, e: web.HTTPException) -> web.StreamResponse:
    if e.status < 400:
        return e
    if e.status == 404:
        detail = "There is nothing here, or nothing you may see."
    elif e.text and not e.text.startswith(f"{e.status}:"):
        detail = e.text  # a message a handler wrote for people
    else:
        detail = ""
    resp = c.render(request, "error.html", status=e.status, title=f"{e.status} {e.reason}",
                    code=e.status, reason=e.reason, detail=detail, headers={
                        k: v for k, v in e.headers.items() if k in ("Retry-After", "Allow")})
    return resp


# ---- handlers ------------------------------------------------------------------------------

def _c(request: web.Request) -> Console:
    return request.app[CONSOLE]


def _user(request: web.Request) -> User:
    u = request[USER_KEY]
    assert u is not None  # guarded by the session middleware
    return u


async def index(request: web.Request) -> web.Response:
    return _redirect("/alerts")


async def login_form(request: web.Request) -> web.Response:
    if request[USER_KEY] is not None:
        return _redirect("/alerts")
    return _c(request).render(request, "login.html", title="Sign in", error=None,
                              next=_safe_next(request.query.get("next")), username="")


async def login(request: web.Request) -> web.Response:
    c = _c(request)
    form = await request.post()
    username = str(form.get("username", "")).strip()[:64]
    password = str(form.get("password", ""))[:1024]
    nxt = _safe_next(str(form.get("next", "")))
    addr = request.remote or "?"
    keys = ("u:" + username.lower(), "a:" + addr)
    wait, stamp = c.limiter.attempt(keys)  # counted now, before the (threaded) check
    if wait > 0:
        c.metrics.logins.labels("throttled").inc()
        log.warning("login throttled for %s", addr)
        return c.render(request, "login.html", status=429, title="Sign in", next=nxt,
                        username=username,
                        error=f"Too many failed sign-ins. Try again in {int(wait // 60) + 1} min.",
                        headers={"Retry-After": str(int(wait) + 1)})
    found = await c.db(c.store.verify_user, username, password) if username and password else None
    if found is None:
        c.metrics.logins.labels("failed").inc()
        log.info("login failed from %s", addr)
        await c.db(c.store.audit, username or "?", "login_failed", None, {"addr": addr})
        return c.render(request, "login.html", status=401, title="Sign in", next=nxt,
                        username=username, error="Wrong username or password.")
    c.limiter.reset(keys[0])
    c.limiter.forgive(keys[1], stamp)
    row = await c.db(Q.session_user, c.store, found["username"])
    request[SET_SESSION_KEY] = c.codec.new_session(
        found["username"], c.codec.password_fingerprint(row["password_hash"]),
        gen=row["session_gen"])
    c.metrics.logins.labels("ok").inc()
    log.info("login ok: %s (%s)", found["username"], found["role"])
    await c.db(c.store.audit, found["username"], "login", None, {"addr": addr})
    return _redirect(nxt)


async def logout(request: web.Request) -> web.Response:
    c = _c(request)
    user = request[USER_KEY]
    if user is not None:
        # Server-side: every cookie of this account stops working, also a copied one.
        await c.db(c.store.end_sessions, user.username)
        await c.db(c.store.audit, user.username, "logout")
    request[SET_SESSION_KEY] = c.codec.new_session()  # a fresh anonymous session
    return _redirect("/login")


async def inbox(request: web.Request) -> web.Response:
    c, user = _c(request), _user(request)
    q = request.query
    state = q.get("state", "open")
    if state not in STATE_FILTERS:
        state = "open"
    type_ = q.get("type", "")
    type_ = type_ if type_ in ALERT_TYPES else ""
    area = q.get("area", "")[:64]
    page = _page_number(q.get("page", "1"))
    filt = dict(manager_id=user.scope, states=STATE_FILTERS[state], type=type_ or None,
                area_id=area or None)
    rows, total, areas = await asyncio.gather(
        c.db(c.store.list_alerts, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, **filt),
        c.db(Q.count_alerts, c.store, **filt),
        c.db(Q.areas, c.store, manager_id=user.scope))
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)

    def page_url(n: int) -> str:
        p = {k: v for k, v in dict(state=state, type=type_, area=area,
                                   lang=_lang(request) if _lang(request) == "zh-CN" else "").items() if v}
        p["page"] = str(n)
        return "/alerts?" + urlencode(p)

    return c.render(request, "inbox.html", title="Inbox", nav="inbox", rows=rows, total=total,
                    page=page, pages=pages, types=list(ALERT_TYPES), areas=areas,
                    state_options=STATE_OPTIONS, lang_url=_lang_url(request),
                    f=dict(state=state, type=type_, area=area),
                    prev_url=page_url(page - 1) if page > 1 else None,
                    next_url=page_url(page + 1) if page < pages else None)


def _page_number(raw: str) -> int:
    """``page``: a whole number from 1 to MAX_PAGE, else 400 (a huge one would
    overflow the database's integer offset)."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 7 and 1 <= int(raw) <= MAX_PAGE:
        return int(raw)
    raise web.HTTPBadRequest(text=f"page: a whole number from 1 to {MAX_PAGE}.")


async def _visible_alert(request: web.Request) -> dict[str, Any]:
    c, user = _c(request), _user(request)
    a = await c.db(c.store.get_alert, request.match_info["alert_id"], manager_id=user.scope)
    if a is None:
        raise web.HTTPNotFound()
    return a


async def alert_page(request: web.Request) -> web.Response:
    c = _c(request)
    a = await _visible_alert(request)
    messages, notes = await asyncio.gather(c.db(c.store.messages_of, a["id"]),
                                           c.db(c.store.notes_for, alert_id=a["id"]))
    charts = []
    rec = a["record"]
    ch = P.context_chart(rec.get("context"))
    if ch is not None:
        charts.append(ch)
    if a["type"] == "voltage":
        _, phases = await c.meters_index()
        vc = P.voltage_view(a, messages or [rec], phases=phases.get(a["meter_id"] or ""),
                            tz=c.settings.timezone)
        if vc is not None:
            charts.append(vc)
    return c.render(request, "alert.html", title=f"{a['type']} / {a['subtype']}", nav="inbox",
                    a=a, messages=messages, notes=notes, charts=charts,
                    evidence=evidence_rows(rec.get("evidence")), outcomes=OUTCOMES,
                    lang_url=_lang_url(request))


async def acknowledge(request: web.Request) -> web.Response:
    c, user = _c(request), _user(request)
    before = await _visible_alert(request)
    try:
        after = await c.db(c.store.acknowledge, before["id"], user.username)
    except NotFound:
        raise web.HTTPNotFound()
    c.metrics.acknowledged(before, after)
    log.info("alert %s acknowledged by %s", before["id"], user.username)
    return _redirect(f"/alerts/{_seg(before['id'])}?done=acknowledged")


async def resolve(request: web.Request) -> web.Response:
    c, user = _c(request), _user(request)
    before = await _visible_alert(request)
    form = await request.post()
    outcome = str(form.get("outcome", ""))
    note = str(form.get("note", ""))
    if outcome not in OUTCOMES:
        raise web.HTTPBadRequest(text="Choose an outcome: " + ", ".join(OUTCOMES) + ".")
    if len(note) > MAX_NOTE:
        raise web.HTTPBadRequest(text=f"A note can have at most {MAX_NOTE} characters.")
    try:
        after = await c.db(c.store.resolve, before["id"], user.username, outcome, note)
    except NotFound:
        raise web.HTTPNotFound()
    c.metrics.acknowledged(before, after)
    log.info("alert %s resolved by %s: %s", before["id"], user.username, outcome)
    return _redirect(f"/alerts/{_seg(before['id'])}?done=resolved")


def _note_text(form) -> str:
    text = str(form.get("text", "")).strip()
    if not text:
        raise web.HTTPBadRequest(text="A note needs text.")
    if len(text) > MAX_NOTE:
        raise web.HTTPBadRequest(text=f"A note can have at most {MAX_NOTE} characters.")
    return text


async def alert_note(request: web.Request) -> web.Response:
    c, user = _c(request), _user(request)
    a = await _visible_alert(request)
    text = _note_text(await request.post())
    await c.db(c.store.add_note, user.username, text, alert_id=a["id"])
    log.info("note added to alert %s by %s", a["id"], user.username)
    return _redirect(f"/alerts/{_seg(a['id'])}?done=note")


async def _visible_customer(request: web.Request) -> tuple[str, list[MeterRow]]:
    c, user = _c(request), _user(request)
    cid = request.match_info["customer_id"]
    by_customer, _ = await c.meters_index()
    meters = [m for m in by_customer.get(cid, [])
              if user.scope is None or m.account_manager == user.scope]
    # Asked whatever the registry says, so another manager's customer costs the same
    # queries (and time) as an id that does not exist: its 404 tells nothing.
    n_alerts = await c.db(Q.customer_alert_count, c.store, cid, manager_id=user.scope)
    if not meters and n_alerts == 0:
        raise web.HTTPNotFound()
    return cid, meters


@dataclass
class _MeterProfile:
    meter_id: str | None
    view: P.ProfileView
    compliance: CV.ComplianceView | None = None


async def customer_page(request: web.Request) -> web.Response:
    c, user = _c(request), _user(request)
    cid, meters = await _visible_customer(request)
    alerts_, notes = await asyncio.gather(
        c.db(c.store.list_alerts, manager_id=user.scope, customer_id=cid, limit=20),
        c.db(c.store.notes_for, customer_id=cid, manager_id=user.scope))
    meter_ids = [m.meter_id for m in meters] or sorted(
        {a["meter_id"] for a in alerts_ if a["meter_id"]})
    docs = await asyncio.gather(*(P.fetch_profile(c.http, c.settings.worker_url, m)
                                  for m in meter_ids)) if c.http is not None else []
    profiles: list[_MeterProfile] = []
    fallback_done = False
    for mid, doc in zip(meter_ids, docs):
        view = P.live_view(doc, holidays_country=c.settings.holidays_country) if doc else None
        if view is None:
            view = P.ProfileView("none")
            if not fallback_done:
                fallback_done = True
                latest = await c.db(Q.latest_context, c.store, cid, manager_id=user.scope)
                ch = P.context_chart(latest[1]) if latest else None
                if ch is not None:
                    view = P.ProfileView("alert", charts=[ch])
                else:
                    view.message = "No alert of this customer carries a day of readings yet."
        profiles.append(_MeterProfile(mid, view, CV.compliance_view(
            doc.get("compliance") if doc else None)))
    if not profiles:
        profiles.append(_MeterProfile(None, P.ProfileView(
            "none", message="No meter known for this customer.")))
    return c.render(request, "customer.html", title=f"Customer {cid}", nav="inbox",
                    customer_id=cid, meters=meters, profiles=profiles, rows=alerts_,
                    notes=notes, lang_url=_lang_url(request))


async def area_page(request: web.Request) -> web.Response:
    """A transformer area's voltage compliance over the standard's period, its dip table
    and its meters, worst first. A manager sees the areas of their own customers, and
    only those customers' meters listed; another area is a 404 like an unknown one."""
    c, user = _c(request), _user(request)
    area_id = request.match_info["area_id"]
    by_customer, _ = await c.meters_index()
    in_area = [m for ms in by_customer.values() for m in ms if m.area_id == area_id]
    visible = {m.meter_id for m in in_area
               if user.scope is None or m.account_manager == user.scope}
    if not visible:
        raise web.HTTPNotFound()
    doc = await CV.fetch_area(c.http, c.settings.worker_url, area_id)
    view = CV.area_view(doc, None if user.scope is None else visible)
    return c.render(request, "area.html", title=f"Area {area_id}", nav="inbox",
                    area_id=area_id, cv=view, lang_url=_lang_url(request))


async def customer_note(request: web.Request) -> web.Response:
    c, user = _c(request), _user(request)
    cid, meters = await _visible_customer(request)
    text = _note_text(await request.post())
    await c.db(c.store.add_note, user.username, text, customer_id=cid,
               manager_id=_note_owner(user, meters))
    log.info("customer note added by %s", user.username)
    return _redirect(f"/customers/{_seg(cid)}?done=note")


def _note_owner(user: User, meters: list[MeterRow]) -> str | None:
    """Whose a customer note is: the writing manager's; for someone who sees all, the
    customer's only manager (None, seen only by those who see all, if it has several)."""
    if user.scope is not None:
        return user.scope
    owners = {m.account_manager for m in meters if m.account_manager}
    return owners.pop() if len(owners) == 1 else None


# ---- the field crews' work list -----------------------------------------------------------

async def _worklist(request: web.Request) -> list[WL.WorkItem]:
    c, user = _c(request), _user(request)
    return await c.db(WL.load, c.store, manager_id=user.scope,
                      tariff_per_kwh=c.settings.tariff_per_kwh)


async def worklist_page(request: web.Request) -> web.Response:
    c = _c(request)
    items = await _worklist(request)
    tariff = c.settings.tariff_per_kwh
    return c.render(request, "worklist.html", title="Work list", nav="worklist",
                    items=items[:MAX_WORKLIST_ROWS], totals=WL.totals(items, tariff),
                    rule=WL.RULE, tariff=tariff, currency=c.settings.currency,
                    lang_url=_lang_url(request))


async def worklist_csv(request: web.Request) -> web.Response:
    c = _c(request)
    items = await _worklist(request)
    out = io.StringIO()
    WL.write_csv(items, out, c.settings.currency)
    # Customer and meter ids: never kept by a cache or proxy.
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="theft-worklist.csv"',
                                 "Cache-Control": "no-store"})


async def evidence_pack(request: web.Request) -> web.Response:
    """A theft suspicion's evidence pack; any other alert, or one this user may not
    see, is a 404 like an id that does not exist."""
    c = _c(request)
    a = await _visible_alert(request)
    if a["type"] != "theft":
        raise web.HTTPNotFound()
    items = await _worklist(request)
    item = next((it for it in items if it.id == a["id"]), None)
    if item is None:  # resolved: off the list, its pack still readable
        item = WL.work_item(a, tariff_per_kwh=c.settings.tariff_per_kwh)
    return c.render(request, "pack.html", title=f"Evidence pack {a['subtype']}", nav="worklist",
                    a=a, it=item, n=len(items), chart=WL.pack_chart(item),
                    evidence=[] if item.model else evidence_rows(a["record"].get("evidence")),
                    currency=c.settings.currency, peer_moved=WL.PEER_MOVED,
                    lang_url=_lang_url(request))


async def audit_page(request: web.Request) -> web.Response:
    c, user = _c(request), _user(request)
    if not user.can_see_audit:
        raise web.HTTPForbidden(text="The audit log is for engineers and admins.")
    actor = request.query.get("actor", "")[:64] or None
    target = request.query.get("target", "")[:80] or None
    entries = await c.db(c.store.audit_log, limit=500, actor=actor, target=target)
    return c.render(request, "audit.html", title="Audit log", nav="audit", entries=entries,
                    actor=actor, target=target)


def _admin(request: web.Request) -> User:
    user = _user(request)
    if not user.can_manage_users:
        raise web.HTTPForbidden(text="Managing users is for admins.")
    return user


async def users_page(request: web.Request, *, error: str | None = None,
                     status: int = 200) -> web.Response:
    c = _c(request)
    _admin(request)
    users_ = await c.db(Q.list_users, c.store)
    return c.render(request, "users.html", status=status, title="Users", nav="users",
                    users=users_, roles=ROLES, error=error)


async def users_add(request: web.Request) -> web.Response:
    c, admin = _c(request), _admin(request)
    form = await request.post()
    username = str(form.get("username", "")).strip()
    role = str(form.get("role", ""))
    manager_id = str(form.get("manager_id", "")).strip() or None
    password = str(form.get("password", ""))
    if not USERNAME_RE.match(username):
        return await users_page(request, status=400,
                                error="Username: 1-64 letters, digits, . _ @ or -.")
    try:
        await c.db(c.store.create_user, username, password, role,
                   manager_id=manager_id if role == "manager" else None, actor=admin.username)
    except ValueError as e:
        return await users_page(request, status=400, error=str(e))
    except IntegrityError:
        return await users_page(request, status=409, error=f"User {username} exists already.")
    log.info("user %s (%s) added by %s", username, role, admin.username)
    return _redirect("/admin/users?done=user_added")


async def users_password(request: web.Request) -> web.Response:
    c, admin = _c(request), _admin(request)
    form = await request.post()
    try:
        await c.db(c.store.set_password, str(form.get("username", "")),
                   str(form.get("password", "")), actor=admin.username)
    except NotFound:
        return await users_page(request, status=404, error="No such user.")
    except ValueError as e:
        return await users_page(request, status=400, error=str(e))
    return _redirect("/admin/users?done=password")


async def users_toggle(request: web.Request) -> web.Response:
    c, admin = _c(request), _admin(request)
    username, action = request.match_info["username"], request.match_info["action"]
    if username == admin.username:
        return await users_page(request, status=400, error="You cannot disable yourself.")
    if not await c.db(Q.set_disabled, c.store, username, action == "disable",
                      actor=admin.username):
        raise web.HTTPNotFound()
    return _redirect(f"/admin/users?done={action}d")


async def metrics(request: web.Request) -> web.Response:
    c = _c(request)
    body = await c.db(c.metrics.exposition)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def health(request: web.Request) -> web.Response:
    c = _c(request)
    try:
        await c.db(Q.ping, c.store)
    except Exception as e:
        log.warning("health: database unavailable (%s)", type(e).__name__)
        return web.json_response({"status": "error", "database": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


@functools.cache
def _css() -> str:
    return (resources.files("stream.console") / "templates" / "console.css").read_text()


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=_css(), content_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})


# ---- the application ----------------------------------------------------------------------

def make_app(settings: Settings, store: AlertStore, registry=None) -> web.Application:
    """The console as an aiohttp Application.

    ``settings.session_secret`` must be at least 32 characters (raises
    :class:`stream.console.auth.SecretError` otherwise). ``registry`` (a
    :class:`stream.registry.Registry`, reloaded when its file changes) gives customers'
    meters and account managers; without it customers are known through their alerts.
    """
    console = Console(settings, store, registry)
    app = web.Application(middlewares=[security_headers, sessions], client_max_size=64 * 1024)
    app[CONSOLE] = console
    r = app.router
    r.add_get("/", index)
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/alerts", inbox)
    r.add_get("/alerts/{alert_id:%s}" % ID_RE, alert_page)
    r.add_post("/alerts/{alert_id:%s}/acknowledge" % ID_RE, acknowledge)
    r.add_post("/alerts/{alert_id:%s}/resolve" % ID_RE, resolve)
    r.add_post("/alerts/{alert_id:%s}/notes" % ID_RE, alert_note)
    r.add_get("/customers/{customer_id:%s}" % ID_RE, customer_page)
    r.add_get("/areas/{area_id:%s}" % ID_RE, area_page)
    r.add_post("/customers/{customer_id:%s}/notes" % ID_RE, customer_note)
    r.add_get("/worklist", worklist_page)
    r.add_get("/worklist.csv", worklist_csv)
    r.add_get("/worklist/{alert_id:%s}" % ID_RE, evidence_pack)
    r.add_get("/audit", audit_page)
    r.add_get("/admin/users", users_page)
    r.add_post("/admin/users", users_add)
    r.add_post("/admin/users/password", users_password)
    r.add_post("/admin/users/{username:[A-Za-z0-9._@-]{1,64}}/{action:disable|enable}",
               users_toggle)
    r.add_get("/metrics", metrics)
    r.add_get("/health", health)
    r.add_get("/static/console.css", stylesheet)

    async def start_http(app: web.Application) -> None:
        console.http = aiohttp.ClientSession(trust_env=False)

    async def stop_http(app: web.Application) -> None:
        if console.http is not None:
            await console.http.close()

    app.on_startup.append(start_http)
    app.on_cleanup.append(stop_http)
    return app

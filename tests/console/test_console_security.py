"""The console against the findings of a security probe, over a real aiohttp server on
loopback and a real database (SQLite and PostgreSQL): the login throttle under parallel
guesses, isolation between managers on a shared customer, server-side logout, malformed
input, ids in links, and where a login may send the browser next."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote, urlencode, urljoin, urlsplit

import pytest
import sqlalchemy as sa
from aiohttp import web

from console_data import (PASSWORDS, REGISTRY_CSV, csrf_from, login, page_csrf, profile_doc,
                          surge_alert)
from stream.store import AlertStore

A_SURGE = "a1surge0000000000001"


def _cookie(c) -> str:
    return c.session.cookie_jar.filter_cookies(c.make_url("/"))["mw_session"].value


def _set_cookie(c, value: str) -> None:
    jar = c.session.cookie_jar
    jar.clear()
    jar.update_cookies({"mw_session": value}, response_url=c.make_url("/"))


# ---- 1. the login throttle holds under parallel guesses ---------------------------------

def test_forty_parallel_wrong_passwords_get_at_most_five_password_checks(console):
    checks: list[str] = []
    verify = console.store.verify_user

    def counting_verify(username, password):  # the real check, counted
        checks.append(username)
        return verify(username, password)

    console.store.verify_user = counting_verify

    async def go(c):
        token = csrf_from(await (await c.get("/login")).text())
        form = {"username": "alice", "password": "wrong-guess-1", "csrf_token": token,
                "next": "/alerts"}
        rs = await asyncio.gather(*(c.post("/login", data=form, allow_redirects=False)
                                    for _ in range(40)))
        statuses = sorted(r.status for r in rs)
        assert statuses.count(401) <= 5 and statuses.count(401) + statuses.count(429) == 40
        for r in rs:
            if r.status == 429:
                assert int(r.headers["Retry-After"]) > 200
        # the right password is refused too while the name is locked
        assert (await login(c, "alice")).status == 429

    console.run(go)
    assert 1 <= len(checks) <= 5
    failed = [e for e in console.store.audit_log() if e["action"] == "login_failed"]
    assert len(failed) == len(checks)


def test_a_successful_login_does_not_count_against_the_address(console):
    async def go(c):
        for _ in range(6):  # more sign-ins than the limit, each one right
            assert (await login(c, "alice")).status == 303
        for _ in range(4):
            assert (await login(c, "bob", "wrong-guess-2")).status == 401
        assert (await login(c, "carol")).status == 303  # 4 failures: the address may try

    console.run(go)


# ---- 2. managers on a shared customer; 404s that tell nothing ---------------------------

SHARED_ROWS = ("MTR-S1-0101,C3001,A1,A,220,mgr1,residential,false,false,customer\n"
               "MTR-S2-0202,C3001,A2,A,220,mgr2,residential,true,false,customer\n")
ALICE_ALERT, BOB_ALERT = "s1surge000000000001", "s2surge000000000002"


def _shared_alert(id_: str, meter: str, area: str) -> dict:
    a = surge_alert(id_, "C1001")
    a.update(customer_id="C3001", meter_id=meter, area_id=area)
    return a


@pytest.fixture
def shared(request, store, registry_file):
    """Customer C3001 has a meter of mgr1 (alice) and one of mgr2 (bob), an alert on
    each, and notes by both."""
    registry_file.write_text(REGISTRY_CSV + SHARED_ROWS)
    store.ingest(_shared_alert(ALICE_ALERT, "MTR-S1-0101", "A1"), manager_id="mgr1")
    store.ingest(_shared_alert(BOB_ALERT, "MTR-S2-0202", "A2"), manager_id="mgr2")
    h = request.getfixturevalue("console")  # built after the registry file is written
    for who, path, text in (("bob", f"/alerts/{BOB_ALERT}/notes", "BOB-ALERT-NOTE box open"),
                            ("bob", "/customers/C3001/notes", "BOB-CUSTOMER-NOTE landlord"),
                            ("alice", "/customers/C3001/notes", "ALICE-CUSTOMER-NOTE mornings")):
        async def write(c):
            await login(c, who)
            token = await page_csrf(c, "/customers/C3001")
            r = await c.post(path, data={"csrf_token": token, "text": text})
            assert r.status == 200 and text in await r.text()

        h.run(write)
    return h


async def _with_worker(shared, username: str, hits: list[str]) -> str:
    docs = {m: profile_doc(m, "A1") for m in ("MTR-S1-0101", "MTR-S2-0202")}

    async def profile(request):
        hits.append(request.match_info["meter_id"])
        return web.json_response(docs[request.match_info["meter_id"]])

    wapp = web.Application()
    wapp.router.add_get("/meters/{meter_id}/profile", profile)
    runner = web.AppRunner(wapp)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    app = shared.app(worker_url=f"http://127.0.0.1:{runner.addresses[0][1]}")

    async def page(c):
        await login(c, username)
        r = await c.get("/customers/C3001")
        assert r.status == 200
        return await r.text()

    try:
        return await asyncio.to_thread(shared.run, page, app=app)
    finally:
        await runner.cleanup()


def test_a_manager_sees_only_their_own_meters_alerts_and_notes_of_a_shared_customer(shared):
    hits: list[str] = []
    html = asyncio.run(_with_worker(shared, "alice", hits))
    assert "MTR-S1-0101" in html and ALICE_ALERT in html
    assert "ALICE-CUSTOMER-NOTE" in html and "Live profile from the worker." in html
    for other in ("MTR-S2-0202", "mgr2", BOB_ALERT, "BOB-ALERT-NOTE", "BOB-CUSTOMER-NOTE"):
        assert other not in html, other
    assert hits == ["MTR-S1-0101"]  # bob's meter's live profile is not even asked for


@pytest.mark.parametrize("who", ["carol", "erin", "adam"])
def test_those_who_see_everything_see_every_managers_part_of_a_shared_customer(shared, who):
    hits: list[str] = []
    html = asyncio.run(_with_worker(shared, who, hits))
    for part in ("MTR-S1-0101", "MTR-S2-0202", "mgr1", "mgr2", ALICE_ALERT, BOB_ALERT,
                 "BOB-ALERT-NOTE", "BOB-CUSTOMER-NOTE", "ALICE-CUSTOMER-NOTE"):
        assert part in html, part
    assert sorted(hits) == ["MTR-S1-0101", "MTR-S2-0202"]


def test_a_customer_note_by_the_control_room_belongs_to_the_customers_only_manager(console):
    async def carol(c):
        await login(c, "carol")
        token = await page_csrf(c, "/customers/C1001")
        r = await c.post("/customers/C1001/notes", data={"csrf_token": token,
                                                         "text": "CONTROL-ROOM-NOTE"})
        assert r.status == 200

    console.run(carol)

    async def reads(c, who, path):
        await login(c, who)
        r = await c.get(path)
        return r.status, await r.text()

    status, html = console.run(lambda c: reads(c, "alice", "/customers/C1001"))
    assert status == 200 and "CONTROL-ROOM-NOTE" in html  # C1001 is alice's (mgr1) alone
    status, _ = console.run(lambda c: reads(c, "bob", "/customers/C1001"))
    assert status == 404


def test_another_managers_customer_costs_the_same_queries_as_an_unknown_id(console):
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().split(" ", 1)[0].upper() in ("SELECT", "INSERT", "UPDATE",
                                                             "DELETE"):
            statements.append(" ".join(statement.split()))

    async def run(c, method, path, data=None):
        statements.clear()
        r = await (c.get(path, allow_redirects=False) if method == "GET" else
                   c.post(path, data=data, allow_redirects=False))
        assert r.status == 404, (method, path, r.status)
        return list(statements)

    async def go(c):
        await login(c, "alice")
        token = await page_csrf(c, "/alerts")
        sa.event.listen(console.store.engine, "before_cursor_execute", record)
        try:
            for method, data in (("GET", None), ("POST", {"csrf_token": token, "text": "x"})):
                suffix = "" if method == "GET" else "/notes"
                theirs = await run(c, method, "/customers/C2001" + suffix, data)  # bob's
                unknown = await run(c, method, "/customers/C9999" + suffix, data)
                assert theirs == unknown, method
                assert any("FROM alerts" in s for s in theirs)  # the store was asked
        finally:
            sa.event.remove(console.store.engine, "before_cursor_execute", record)

    console.run(go)


# ---- 3. logging out ends the session on the server --------------------------------------

def test_a_cookie_saved_before_logout_neither_reads_nor_writes_after_it(console):
    async def go(c):
        assert (await login(c, "alice")).status == 303
        token = await page_csrf(c, "/customers/C1001")
        saved = _cookie(c)
        r = await c.post("/logout", data={"csrf_token": token}, allow_redirects=False)
        assert r.status == 303
        _set_cookie(c, saved)  # the stolen or kept cookie, sent again
        r = await c.get("/alerts", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/login")
        r = await c.get(f"/alerts/{A_SURGE}", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/login")
        for path, data in (("/customers/C1001/notes", {"text": "AFTER-LOGOUT-1"}),
                           (f"/alerts/{A_SURGE}/notes", {"text": "AFTER-LOGOUT-2"}),
                           (f"/alerts/{A_SURGE}/acknowledge", {})):
            r = await c.post(path, data=dict(data, csrf_token=token), allow_redirects=False)
            assert r.status in (303, 403) and r.headers.get("Location", "/login") == "/login"
        # logging in again works, with a new session
        assert (await login(c, "alice")).status == 303
        assert (await c.get("/alerts", allow_redirects=False)).status == 200

    console.run(go)
    st = console.store
    texts = [n["text"] for n in st.notes_for(customer_id="C1001")]
    assert not any(t.startswith("AFTER-LOGOUT") for t in texts)
    assert st.get_alert(A_SURGE)["state"] == "new"


def test_logging_out_ends_the_accounts_other_sessions_too(console):
    async def go(c):
        await login(c, "alice")
        other = _cookie(c)  # as if from a second browser
        await login(c, "alice")
        token = await page_csrf(c, "/alerts")
        await c.post("/logout", data={"csrf_token": token})
        _set_cookie(c, other)
        assert (await c.get("/alerts", allow_redirects=False)).status == 303

    console.run(go)


def test_a_store_made_before_session_generations_and_note_owners_gains_them(db_url):
    s = AlertStore(db_url)
    s.create_user("alice", PASSWORDS["alice"], "manager", manager_id="mgr1")
    s.create_user("carol", PASSWORDS["carol"], "control_room")
    s.ingest(surge_alert("b1surge0000000000001", "C2001"), manager_id="mgr2")
    s.add_note("carol", "on the alert", alert_id="b1surge0000000000001")
    s.add_note("alice", "on the customer", customer_id="C1001")
    with s.engine.begin() as c:  # the schema of the previous version
        c.execute(sa.text("ALTER TABLE users DROP COLUMN session_gen"))
        c.execute(sa.text("ALTER TABLE notes DROP COLUMN manager_id"))
        c.execute(sa.text("DROP TABLE alembic_version"))  # made before migrations
    s.close()
    s = AlertStore(db_url)  # opening it adds the columns and fills them
    try:
        assert s.session_user("alice")["session_gen"] == 0
        assert [n["text"] for n in s.notes_for(customer_id="C2001", manager_id="mgr2")] == [
            "on the alert"]
        assert [n["text"] for n in s.notes_for(customer_id="C1001", manager_id="mgr1")] == [
            "on the customer"]
        assert s.end_sessions("alice") and s.session_user("alice")["session_gen"] == 1
        assert not s.end_sessions("nobody")
    finally:
        s.close()


# ---- 4. malformed input answers 400, not 500 --------------------------------------------

async def _raw_post(c, path, body: bytes, ctype: str):
    return await c.post(path, data=body, headers={"Content-Type": ctype},
                        allow_redirects=False)


def test_a_page_number_that_is_not_a_sane_whole_number_answers_400(console):
    async def go(c):
        await login(c, "alice")
        for page in ("9999999999999999999", "1000001", "0", "-1", "abc", "1e3", "１", ""):
            r = await c.get("/alerts?" + urlencode({"page": page}))
            assert r.status == 400 and "whole number" in await r.text(), page
        assert (await c.get("/alerts?page=1")).status == 200
        assert (await c.get("/alerts?page=1000000")).status == 200  # past the end: empty

    console.run(go)


def test_a_form_that_cannot_be_decoded_answers_400_and_stores_nothing(console):
    raw_post = _raw_post

    async def go(c):
        token = csrf_from(await (await c.get("/login")).text())
        form = f"csrf_token={token}&username=alice&password=".encode()
        bad_utf8 = await raw_post(c, "/login", form + b"\xff\xfe\xfa",
                                  "application/x-www-form-urlencoded")
        assert bad_utf8.status == 400 and "could not be read" in await bad_utf8.text()
        bad_charset = await raw_post(c, "/login", form + b"x",
                                     "application/x-www-form-urlencoded; charset=x-no-such")
        assert bad_charset.status == 400
        await login(c, "alice")
        token = await page_csrf(c, "/customers/C1001")
        r = await raw_post(c, "/customers/C1001/notes",
                           f"csrf_token={token}&text=".encode() + b"\xc3\x28 BROKEN",
                           "application/x-www-form-urlencoded")
        assert r.status == 400
        r = await raw_post(c, "/customers/C1001/notes",
                           f"csrf_token={token}&text=BROKEN2".encode(),
                           "application/x-www-form-urlencoded; charset=klingon")
        assert r.status == 400
        for body in (b"no boundary in here", b"--xx\r\nContent-Disposition: form-data; "
                     b"name=\"text\"\r\n\r\n\xff\xfe BROKEN3\r\n--xx--\r\n"):
            r = await raw_post(c, "/customers/C1001/notes", body,
                               "multipart/form-data; boundary=xx")
            assert r.status == 400

    console.run(go)
    assert console.store.notes_for(customer_id="C1001") == []


# ---- 5. ids are one encoded path segment in every link ----------------------------------

HOSTILE_ID = "../../admin/users?x=1"
HOSTILE_SEG = "..%2F..%2Fadmin%2Fusers%3Fx%3D1"


def test_a_hostile_alert_id_links_as_one_encoded_segment_that_reaches_its_alert(console):
    a = surge_alert(HOSTILE_ID, "C1001")
    a["customer_id"] = "C1001/../x?y#z"
    console.store.ingest(a, manager_id="mgr1")

    async def go(c):
        await login(c, "alice")
        html = await (await c.get("/alerts")).text()
        href = f"/alerts/{HOSTILE_SEG}"
        assert f'class="alert-link" href="{href}"' in html
        assert 'href="/customers/C1001%2F..%2Fx%3Fy%23z"' in html
        base = str(c.make_url("/alerts"))
        assert urlsplit(urljoin(base, href)).path == href  # a browser stays on it
        r = await c.get(href, allow_redirects=False)
        page = await r.text()
        assert r.status == 200 and "../../admin/users?x=1" in page
        assert f'action="{href}/acknowledge"' in page
        # the language switch keeps it encoded (yarl may write "=" as itself: same path)
        lang = re.search(r'class="lang" href="([^"]+)"', page).group(1)
        assert lang.endswith("?lang=zh-CN") and lang.startswith("/alerts/..%2F..%2Fadmin%2F")
        assert unquote(urlsplit(urljoin(base, lang)).path) == "/alerts/" + HOSTILE_ID
        token = csrf_from(page)
        r = await c.post(f"{href}/acknowledge", data={"csrf_token": token},
                         allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == f"{href}?done=acknowledged"
        r = await c.post(f"{href}/notes", data={"csrf_token": token, "text": "seen"},
                         allow_redirects=False)
        assert r.headers["Location"] == f"{href}?done=note"
        r = await c.get("/customers/C1001%2F..%2Fx%3Fy%23z")
        html = await r.text()
        assert r.status == 200 and 'action="/customers/C1001%2F..%2Fx%3Fy%23z/notes"' in html
        assert f'<a href="{href}">alert</a>' in html  # the note's link to its alert

    console.run(go)
    assert console.store.get_alert(HOSTILE_ID)["state"] == "acknowledged"


# ---- 6. after login, only a path on this console ----------------------------------------

HOSTILE_NEXT = ["/\t/evil.example/", "/\n/evil.example", "/\r\n/evil.example",
                "//evil.example", "/\\evil.example", "\\\\evil.example", "/\\/evil.example",
                "///evil.example", " /alerts", "/alerts ", "/ /evil.example", "/alerts\x00",
                "/\x7f/evil", "/alerts\u3000x", "/\u200b/evil.example", "/alerts\\..\\x",
                "https://evil.example/", "javascript:alert(1)", "http:/evil.example",
                "evil.example", "", "/" + "a" * 600]


def test_login_sends_only_to_a_same_origin_path(console):
    async def go(c):
        for nxt in HOSTILE_NEXT:
            html = await (await c.get("/login?" + urlencode({"next": nxt}))).text()
            assert re.search(r'name="next" value="/alerts"', html), repr(nxt)
            token = csrf_from(html)
            r = await c.post("/login", data={"username": "alice", "password": PASSWORDS["alice"],
                                             "csrf_token": token, "next": nxt},
                             allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/alerts", repr(nxt)
            await c.post("/logout", data={"csrf_token": await page_csrf(c, "/alerts")})
        for nxt in ("/alerts?state=all&page=1", "/customers/C1001", f"/alerts/{HOSTILE_SEG}"):
            token = csrf_from(await (await c.get("/login")).text())
            r = await c.post("/login", data={"username": "alice", "password": PASSWORDS["alice"],
                                             "csrf_token": token, "next": nxt},
                             allow_redirects=False)
            assert r.headers["Location"] == nxt

    console.run(go)

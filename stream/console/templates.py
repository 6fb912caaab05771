"""The console's pages: Jinja2 templates (autoescaped) and the stylesheet.

Kept in a module rather than as files so they ship with the package whatever way it is
installed. No JavaScript: forms post, links navigate, charts are inline SVG. An id in
a link or form action always goes through the ``seg`` filter (one percent-encoded path
segment), never raw and never through ``urlencode``, which leaves "/" as it is.
"""

from __future__ import annotations

BASE = """<!doctype html>
<html lang="{{ 'zh-CN' if lang == 'zh-CN' else 'en' }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{% block title %}{{ title }}{% endblock %} · meterwatch</title>
<link rel="stylesheet" href="/static/console.css">
</head>
<body>
<header class="top">
  <a class="brand" href="/">meterwatch</a>
  {% if user %}
  <nav>
    <a href="/alerts" {% if nav == 'inbox' %}class="active"{% endif %}>Inbox</a>
    <a href="/worklist" id="nav-worklist" {% if nav == 'worklist' %}class="active"{% endif %}>Work list</a>
    {% if user.can_see_audit %}<a href="/audit" {% if nav == 'audit' %}class="active"{% endif %}>Audit log</a>{% endif %}
    {% if user.can_manage_users %}<a href="/admin/users" {% if nav == 'users' %}class="active"{% endif %}>Users</a>{% endif %}
  </nav>
  <div class="who">
    {% if lang_url %}<a class="lang" href="{{ lang_url }}">{{ 'English' if lang == 'zh-CN' else '中文 zh-CN' }}</a>{% endif %}
    <span id="whoami">{{ user.username }}</span> <span class="role">{{ user.role | replace('_', ' ') }}{% if user.manager_id %} · {{ user.manager_id }}{% endif %}</span>
    <form method="post" action="/logout" class="inline">
      <input type="hidden" name="csrf_token" value="{{ csrf }}">
      <button type="submit" class="link">Log out</button>
    </form>
  </div>
  {% endif %}
</header>
<main>
{% if flash %}<p class="flash" role="status">{{ flash }}</p>{% endif %}
{% block content %}{% endblock %}
</main>
</body>
</html>
"""

LOGIN = """{% extends "base.html" %}
{% block content %}
<section class="login">
  <h1>Sign in</h1>
  {% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
  <form method="post" action="/login" id="login-form">
    <input type="hidden" name="csrf_token" value="{{ csrf }}">
    <input type="hidden" name="next" value="{{ next }}">
    <label>Username <input name="username" autocomplete="username" required maxlength="64" value="{{ username }}" autofocus></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" required maxlength="1024"></label>
    <button type="submit">Sign in</button>
  </form>
</section>
{% endblock %}
"""

_ALERT_ROWS = """
<table class="alerts">
  <thead><tr><th>Severity</th><th>Alert</th><th>Customer / area</th><th>Detected</th><th>State</th><th>Message</th></tr></thead>
  <tbody>
  {% for a in rows %}
    <tr class="sev-{{ a.severity }} state-{{ a.state }}" data-alert-id="{{ a.id }}">
      <td><span class="badge sev-{{ a.severity }}">{{ a.severity }}</span></td>
      <td><a class="alert-link" href="/alerts/{{ a.id | seg }}{{ lang_q }}">{{ a.type | replace('_', ' ') }} / {{ a.subtype | replace('_', ' ') }}</a>
          {% if a.status == 'closed' %}<span class="cleared">cleared</span>{% endif %}</td>
      <td>{% if a.customer_id %}<a href="/customers/{{ a.customer_id | seg }}">{{ a.customer_id }}</a>{% else %}area {{ a.area_id }}{% endif %}
          <span class="muted">{{ a.area_id or '' }}</span></td>
      <td>{{ a.detected_ts | ts }}</td>
      <td><span class="state {{ a.state }}">{{ a.state }}</span></td>
      <td class="msg">{{ a.record | message(lang) }}</td>
    </tr>
  {% else %}
    <tr><td colspan="6" class="empty">No alerts.</td></tr>
  {% endfor %}
  </tbody>
</table>
"""

INBOX = """{% extends "base.html" %}
{% block content %}
<h1>Inbox <span class="muted">{{ total }} alert{{ '' if total == 1 else 's' }}</span></h1>
<form method="get" action="/alerts" class="filters" id="filters">
  {% if lang == 'zh-CN' %}<input type="hidden" name="lang" value="zh-CN">{% endif %}
  <label>State <select name="state">
    {% for v, label in state_options %}<option value="{{ v }}" {% if v == f.state %}selected{% endif %}>{{ label }}</option>{% endfor %}
  </select></label>
  <label>Type <select name="type">
    <option value="">all</option>
    {% for t in types %}<option value="{{ t }}" {% if t == f.type %}selected{% endif %}>{{ t | replace('_', ' ') }}</option>{% endfor %}
  </select></label>
  <label>Area <select name="area">
    <option value="">all</option>
    {% for ar in areas %}<option value="{{ ar }}" {% if ar == f.area %}selected{% endif %}>{{ ar }}</option>{% endfor %}
  </select></label>
  <button type="submit">Filter</button>
</form>
""" + _ALERT_ROWS + """
<nav class="pager">
  {% if prev_url %}<a href="{{ prev_url }}" rel="prev">← newer</a>{% endif %}
  <span>page {{ page }} of {{ pages }}</span>
  {% if next_url %}<a href="{{ next_url }}" rel="next">older →</a>{% endif %}
</nav>
{% endblock %}
"""

ALERT = """{% extends "base.html" %}
{% block content %}
<p class="crumbs"><a href="/alerts{{ lang_q }}">← Inbox</a></p>
<h1><span class="badge sev-{{ a.severity }}">{{ a.severity }}</span>
  {{ a.type | replace('_', ' ') }} / {{ a.subtype | replace('_', ' ') }}
  <span class="state {{ a.state }}" id="alert-state">{{ a.state }}</span>
  {% if a.status == 'closed' %}<span class="cleared">cleared</span>{% endif %}</h1>
<p class="message" id="alert-message">{{ a.record | message(lang) }}</p>
{% if a.type == 'theft' %}<p><a id="pack-link" href="/worklist/{{ a.id | seg }}">Evidence pack for the field crew</a></p>{% endif %}

<div class="cols">
<section class="facts">
  <h2>Alert</h2>
  <dl>
    <dt>Customer</dt><dd>{% if a.customer_id %}<a id="customer-link" href="/customers/{{ a.customer_id | seg }}">{{ a.customer_id }}</a>{% else %}—{% endif %}</dd>
    <dt>Meter</dt><dd>{{ a.meter_id or '—' }}</dd>
    <dt>Area</dt><dd>{{ a.area_id or '—' }} ({{ a.scope }})</dd>
    <dt>Started</dt><dd>{{ a.start_ts | ts }}</dd>
    <dt>Detected</dt><dd>{{ a.detected_ts | ts }}</dd>
    <dt>Received</dt><dd>{{ a.first_seen_at | ts }}</dd>
    <dt>Condition</dt><dd>{{ 'cleared' if a.status == 'closed' else 'ongoing' }}</dd>
    <dt>Score</dt><dd>{{ a.score if a.score is not none else '—' }}</dd>
    {% if a.acknowledged_by %}<dt>Acknowledged</dt><dd>{{ a.acknowledged_by }}, {{ a.acknowledged_at | ts }}</dd>{% endif %}
    {% if a.resolved_by %}<dt>Resolved</dt><dd>{{ a.resolved_by }}, {{ a.resolved_at | ts }}: <strong id="alert-outcome">{{ a.outcome | replace('_', ' ') }}</strong></dd>{% endif %}
    <dt>Alert id</dt><dd class="mono">{{ a.id }}</dd>
  </dl>
</section>

<section class="actions">
  <h2>Actions</h2>
  {% if a.state == 'new' %}
  <form method="post" action="/alerts/{{ a.id | seg }}/acknowledge" id="ack-form">
    <input type="hidden" name="csrf_token" value="{{ csrf }}">
    <button type="submit">Acknowledge</button>
  </form>
  {% endif %}
  {% if a.state != 'resolved' %}
  <form method="post" action="/alerts/{{ a.id | seg }}/resolve" id="resolve-form">
    <input type="hidden" name="csrf_token" value="{{ csrf }}">
    <label>Outcome <select name="outcome" required>
      <option value="">choose…</option>
      {% for o in outcomes %}<option value="{{ o }}">{{ o | replace('_', ' ') }}</option>{% endfor %}
    </select></label>
    <label>Follow-up note <textarea name="note" rows="3" maxlength="5000"></textarea></label>
    <button type="submit">Resolve</button>
  </form>
  {% endif %}
  <form method="post" action="/alerts/{{ a.id | seg }}/notes" id="note-form">
    <input type="hidden" name="csrf_token" value="{{ csrf }}">
    <label>Add a note <textarea name="text" rows="2" maxlength="5000" required></textarea></label>
    <button type="submit">Add note</button>
  </form>
</section>
</div>

<section class="charts">
  <h2>Evidence</h2>
  {% for c in charts %}
  <figure><h3 class="chart-title">{{ c.title }}</h3>{{ c.svg | safe }}<figcaption>{{ c.note }}</figcaption></figure>
  {% else %}
  <p class="muted">No chart for this alert: its record carries no readings context.</p>
  {% endfor %}
  <table class="evidence">
    {% for k, v in evidence %}<tr><th>{{ k | replace('_', ' ') }}</th><td>{{ v }}</td></tr>{% endfor %}
  </table>
</section>

<section>
  <h2>Notes</h2>
  <ul class="notes" id="notes">
  {% for n in notes %}<li><span class="muted">{{ n.created_at | ts }} · {{ n.author }}</span><p>{{ n.text }}</p></li>
  {% else %}<li class="muted">No notes yet.</li>{% endfor %}
  </ul>
</section>

<section>
  <h2>Messages</h2>
  <table class="history">
    <thead><tr><th>Detected</th><th>Status</th><th>Severity</th><th>Message</th></tr></thead>
    {% for m in messages %}
    <tr><td>{{ m.detected_at | isots }}</td><td>{{ m.status }}</td><td>{{ m.severity }}</td><td>{{ m | message(lang) }}</td></tr>
    {% endfor %}
  </table>
</section>
{% endblock %}
"""


_COMPLIANCE = """
{% macro compliance_table(cv) %}
  {% if cv.periods %}
  <p class="muted">{{ cv.name }}: compliance over the standard's period, as the worker accumulates it.</p>
  <table class="compliance">
    <thead><tr><th>Period</th><th>Starting</th><th>{{ cv.share_label }}</th><th>{{ cv.outer_label }}</th><th>Measured</th><th>Verdict</th></tr></thead>
    {% for p in cv.periods %}
    <tr class="period-{{ p.label | replace(' ', '-') }}"><td>{{ p.label }}</td><td>{{ p.period }}</td><td class="share">{{ p.share }}</td><td>{{ p.outer }}</td><td>{{ p.coverage }}</td>
        <td class="verdict {{ 'ok' if p.ok else ('bad' if p.ok == false else 'running') }}">{{ p.verdict }}{% if p.meters %} · {{ p.meters }}{% endif %}</td></tr>
    {% endfor %}
  </table>
  {% endif %}
  {% if cv.message %}<p class="muted compliance-message">{{ cv.message }}</p>{% endif %}
{% endmacro %}
{% macro dip_table(cv) %}
  {% if cv.periods %}
  <table class="dips">
    <thead><tr><th>Period</th>{% for k, _ in cv.periods[0].dips %}<th>dips {{ k }} %</th>{% endfor %}{% for k, _ in cv.periods[0].swells %}<th>swells {{ k }} %</th>{% endfor %}</tr></thead>
    {% for p in cv.periods %}
    <tr><td>{{ p.label }}</td>{% for _, n in p.dips %}<td>{{ n }}</td>{% endfor %}{% for _, n in p.swells %}<td>{{ n }}</td>{% endfor %}</tr>
    {% endfor %}
  </table>
  <p class="muted">Residual voltage rows of EN 50160's dip table (u in % of Un), counted from the interval minima: at most one dip per interval, duration not resolved; below 10 % is an IEEE 1159 interruption.</p>
  {% endif %}
{% endmacro %}
"""

AREA = """{% extends "base.html" %}
{% from "compliance.html" import compliance_table, dip_table %}
{% block content %}
<p class="crumbs"><a href="/alerts{{ lang_q }}">← Inbox</a></p>
<h1>Area {{ area_id }}</h1>
<section id="area-compliance">
  <h2>Voltage compliance</h2>
  {{ compliance_table(cv) }}
</section>
<section id="area-dips">
  <h2>Dips and swells</h2>
  {{ dip_table(cv) }}
</section>
<section id="area-meters">
  <h2>Meters this period</h2>
  <table class="meters">
    <thead><tr><th>Meter</th><th>Customer</th><th>{{ cv.share_label or 'Share' }}</th><th>Measured</th><th>Failed</th></tr></thead>
    {% for m in cv.meters %}
    <tr><td>{{ m.meter_id }}</td><td>{% if m.customer_id %}<a href="/customers/{{ m.customer_id | seg }}">{{ m.customer_id }}</a>{% endif %}</td><td>{{ m.share }}</td><td>{{ m.coverage }}</td><td>{{ 'yes' if m.failed else 'no' }}</td></tr>
    {% else %}<tr><td colspan="5" class="empty">No meter data from the worker.</td></tr>{% endfor %}
  </table>
  {% if cv.hidden %}<p class="muted" id="hidden-meters">{{ cv.hidden }} meter(s) of other managers' customers are counted in the figures but not listed.</p>{% endif %}
</section>
{% endblock %}
"""

CUSTOMER = """{% extends "base.html" %}
{% from "compliance.html" import compliance_table, dip_table %}
{% block content %}
<p class="crumbs"><a href="/alerts{{ lang_q }}">← Inbox</a></p>
<h1>Customer {{ customer_id }}</h1>
<section class="facts">
  <h2>Profile</h2>
  {% if meters %}
  <table class="meters">
    <thead><tr><th>Meter</th><th>Area</th><th>Phase</th><th>Nominal</th><th>Tariff</th><th>Solar</th><th>Care</th><th>Account manager</th></tr></thead>
    {% for m in meters %}
    <tr><td>{{ m.meter_id }}</td><td><a href="/areas/{{ m.area_id | seg }}">{{ m.area_id }}</a></td><td>{{ '3-phase' if m.phases == 3 else '1-phase' }}</td><td>{{ m.nominal_v }} V</td>
        <td>{{ m.tariff | replace('_', ' ') }}</td><td>{{ 'yes' if m.solar else 'no' }}</td><td>{{ 'yes' if m.care else 'no' }}</td><td>{{ m.account_manager }}</td></tr>
    {% endfor %}
  </table>
  {% else %}
  <p class="muted">Not in the meter registry; shown from its alerts.</p>
  {% endif %}
</section>

<section class="charts" id="profile">
  <h2>Usual day</h2>
  {% for pv in profiles %}
    {% if pv.meter_id and meters | length > 1 %}<h3>Meter {{ pv.meter_id }}</h3>{% endif %}
    {% if pv.view.source == 'live' %}
      <p class="source live" id="profile-source">Live profile from the worker.</p>
    {% else %}
      <p class="source unavailable" id="profile-source">Live profile unavailable{% if pv.view.source == 'alert' %}; showing the day of the latest alert instead{% endif %}.</p>
    {% endif %}
    {% for c in pv.view.charts %}<figure><h3 class="chart-title">{{ c.title }}</h3>{{ c.svg | safe }}<figcaption>{{ c.note }}</figcaption></figure>{% endfor %}
    {% if pv.view.message %}<p class="muted">{{ pv.view.message }}</p>{% endif %}
  {% endfor %}
</section>

<section id="compliance">
  <h2>Voltage compliance</h2>
  {% for pv in profiles %}{% if pv.compliance %}
    {% if pv.meter_id and meters | length > 1 %}<h3>Meter {{ pv.meter_id }}</h3>{% endif %}
    {{ compliance_table(pv.compliance) }}
    {{ dip_table(pv.compliance) }}
  {% endif %}{% endfor %}
</section>

<section>
  <h2>Recent alerts</h2>
""" + _ALERT_ROWS + """
</section>

<section>
  <h2>Notes</h2>
  <ul class="notes" id="notes">
  {% for n in notes %}<li><span class="muted">{{ n.created_at | ts }} · {{ n.author }}{% if n.alert_id %} · <a href="/alerts/{{ n.alert_id | seg }}">alert</a>{% endif %}</span><p>{{ n.text }}</p></li>
  {% else %}<li class="muted">No notes yet.</li>{% endfor %}
  </ul>
  <form method="post" action="/customers/{{ customer_id | seg }}/notes" id="customer-note-form">
    <input type="hidden" name="csrf_token" value="{{ csrf }}">
    <label>Add a note <textarea name="text" rows="2" maxlength="5000" required></textarea></label>
    <button type="submit">Add note</button>
  </form>
</section>
{% endblock %}
"""

AUDIT = """{% extends "base.html" %}
{% block content %}
<h1>Audit log</h1>
<form method="get" action="/audit" class="filters">
  <label>Who <input name="actor" value="{{ actor or '' }}" maxlength="64"></label>
  <label>Target <input name="target" value="{{ target or '' }}" maxlength="80"></label>
  <button type="submit">Filter</button>
</form>
<table class="audit" id="audit">
  <thead><tr><th>When</th><th>Who</th><th>What</th><th>Target</th><th>Detail</th></tr></thead>
  {% for e in entries %}
  <tr><td>{{ e.at | ts(True) }}</td><td>{{ e.actor }}</td><td>{{ e.action | replace('_', ' ') }}</td><td class="mono">{{ e.target or '' }}</td><td class="mono">{{ e.detail or '' }}</td></tr>
  {% else %}<tr><td colspan="5" class="empty">Nothing recorded.</td></tr>{% endfor %}
</table>
{% endblock %}
"""

USERS = """{% extends "base.html" %}
{% block content %}
<h1>Users</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<table class="users" id="users">
  <thead><tr><th>Username</th><th>Role</th><th>Manager id</th><th>Created</th><th>Status</th><th></th></tr></thead>
  {% for u in users %}
  <tr><td>{{ u.username }}</td><td>{{ u.role | replace('_', ' ') }}</td><td>{{ u.manager_id or '' }}</td><td>{{ u.created_at | ts }}</td>
      <td>{{ 'disabled' if u.disabled else 'active' }}</td>
      <td>{% if u.username != user.username %}
        <form method="post" action="/admin/users/{{ u.username | seg }}/{{ 'enable' if u.disabled else 'disable' }}" class="inline">
          <input type="hidden" name="csrf_token" value="{{ csrf }}">
          <button type="submit" class="link">{{ 'enable' if u.disabled else 'disable' }}</button>
        </form>{% endif %}</td></tr>
  {% endfor %}
</table>
<div class="cols">
<section>
<h2>Add a user</h2>
<form method="post" action="/admin/users" id="add-user-form">
  <input type="hidden" name="csrf_token" value="{{ csrf }}">
  <label>Username <input name="username" required maxlength="64" pattern="[A-Za-z0-9._@-]+"></label>
  <label>Role <select name="role">{% for r in roles %}<option value="{{ r }}">{{ r | replace('_', ' ') }}</option>{% endfor %}</select></label>
  <label>Manager id (managers) <input name="manager_id" maxlength="64"></label>
  <label>Password <input name="password" type="password" autocomplete="new-password" required minlength="8" maxlength="1024"></label>
  <button type="submit">Add user</button>
</form>
</section>
<section>
<h2>Set a password</h2>
<form method="post" action="/admin/users/password" id="passwd-form">
  <input type="hidden" name="csrf_token" value="{{ csrf }}">
  <label>Username <select name="username">{% for u in users %}<option>{{ u.username }}</option>{% endfor %}</select></label>
  <label>New password <input name="password" type="password" autocomplete="new-password" required minlength="8" maxlength="1024"></label>
  <button type="submit">Set password</button>
</form>
</section>
</div>
{% endblock %}
"""

WORKLIST = """{% extends "base.html" %}
{% block content %}
<h1>Theft work list <span class="muted">{{ totals.suspicions }} open suspicion{{ '' if totals.suspicions == 1 else 's' }}</span></h1>
<p class="rule" id="worklist-rule"><strong>Order.</strong> {{ rule }} Resolving a suspicion with the crew's outcome takes it off the list.</p>
<p id="worklist-totals">Estimated unbilled energy: <strong>{{ totals.unbilled_kwh | num }} kWh</strong> over {{ totals.estimated }} suspicion{{ '' if totals.estimated == 1 else 's' }}{% if totals.money is not none %} (<strong>{{ totals.money | num(2) }} {{ currency }}</strong> at {{ tariff }} {{ currency }}/kWh){% endif %};
  expected recovery (risk × estimate) {{ totals.expected_kwh | num }} kWh.
  <a href="/worklist.csv" id="worklist-csv" download>Download CSV</a></p>
<table class="worklist" id="worklist">
  <thead><tr><th>#</th><th>Customer</th><th>Meter</th><th>Area</th><th>Attack shape</th><th>Since</th><th class="num">Days</th><th class="num">Risk</th><th class="num">Unbilled kWh</th>{% if totals.money is not none %}<th class="num">Unbilled {{ currency }}</th>{% endif %}<th class="num">Corrob.</th><th>State</th><th>Follow up</th></tr></thead>
  <tbody>
  {% for it in items %}
    <tr data-alert-id="{{ it.id }}" class="sev-{{ it.alert.severity }}">
      <td class="rank">{{ it.rank }}</td>
      <td>{% if it.alert.customer_id %}<a href="/customers/{{ it.alert.customer_id | seg }}">{{ it.alert.customer_id }}</a>{% else %}—{% endif %}</td>
      <td class="nowrap">{{ it.alert.meter_id or '—' }}</td>
      <td>{{ it.alert.area_id or '—' }}</td>
      <td class="shape">{% if it.shape %}<strong>{{ it.shape }}</strong>{% if it.shape_words %} · {{ it.shape_words }}{% endif %}{% else %}{{ it.alert.subtype | replace('_', ' ') }} <span class="muted">(rule)</span>{% endif %}</td>
      <td class="nowrap">{{ it.since_day or '—' }}</td>
      <td class="num">{{ it.days if it.days is not none else '—' }}</td>
      <td class="num">{{ it.risk | num(2) }}</td>
      <td class="num unbilled">{% if it.unbilled_kwh is not none %}{{ it.unbilled_kwh | num }}{% else %}<span class="muted">unknown</span>{% endif %}</td>
      {% if totals.money is not none %}<td class="num money">{{ it.money | num(2) }}</td>{% endif %}
      <td class="num corroboration">{{ it.corroboration | length }}</td>
      <td><span class="state {{ it.alert.state }}">{{ it.alert.state }}</span>{% if it.alert.status == 'closed' %}<span class="cleared">cleared</span>{% endif %}</td>
      <td><a class="pack-link" href="/worklist/{{ it.id | seg }}{{ lang_q }}">evidence pack</a> · <a class="outcome-link" href="/alerts/{{ it.id | seg }}{{ lang_q }}#resolve-form">enter outcome</a></td>
    </tr>
  {% else %}
    <tr><td colspan="13" class="empty">No open theft suspicion.</td></tr>
  {% endfor %}
  </tbody>
</table>
{% if items | length < totals.suspicions %}<p class="muted" id="worklist-more">The first {{ items | length }} are shown; the CSV has all {{ totals.suspicions }}.</p>{% endif %}
{% endblock %}
"""

PACK = """{% extends "base.html" %}
{% block content %}
<p class="crumbs"><a href="/worklist{{ lang_q }}">← Work list</a></p>
<h1>Evidence pack: {{ a.subtype | replace('_', ' ') }}
  {% if it.rank %}<span class="muted" id="pack-rank">rank {{ it.rank }} of {{ n }}</span>{% else %}<span class="muted" id="pack-rank">not on the work list ({{ a.state }})</span>{% endif %}</h1>
<p class="message" id="alert-message">{{ a.record | message(lang) }}</p>

<div class="cols">
<section class="facts">
  <h2>Suspicion</h2>
  <dl id="pack-facts">
    <dt>Customer</dt><dd>{% if a.customer_id %}<a href="/customers/{{ a.customer_id | seg }}">{{ a.customer_id }}</a>{% else %}—{% endif %}</dd>
    <dt>Meter</dt><dd>{{ a.meter_id or '—' }}</dd>
    <dt>Area</dt><dd>{{ a.area_id or '—' }}</dd>
    <dt>Onset</dt><dd>{{ it.since_day or '—' }}{% if it.days is not none %} ({{ it.days }} day{{ '' if it.days == 1 else 's' }}){% endif %}</dd>
    <dt>Risk</dt><dd id="pack-risk">{{ it.risk | num(2) }}</dd>
    <dt>Unbilled since onset</dt><dd id="pack-unbilled">{% if it.unbilled_kwh is not none %}{{ it.unbilled_kwh | num }} kWh{% if it.money is not none %} · {{ it.money | num(2) }} {{ currency }}{% endif %}{% else %}unknown (a rule-based indicator: no estimate){% endif %}</dd>
    <dt>Expected recovery</dt><dd>{% if it.expected_kwh is not none %}{{ it.expected_kwh | num }} kWh (risk × estimate){% else %}—{% endif %}</dd>
    <dt>Alert</dt><dd><a id="alert-link" href="/alerts/{{ a.id | seg }}{{ lang_q }}">{{ a.type }} / {{ a.subtype | replace('_', ' ') }}</a> <span class="state {{ a.state }}">{{ a.state }}</span>{% if a.status == 'closed' %}<span class="cleared">cleared</span>{% endif %}</dd>
    <dt>Detected</dt><dd>{{ a.detected_ts | ts }}</dd>
  </dl>
</section>
<section class="actions">
  <h2>Inspection outcome</h2>
  {% if a.state == 'resolved' %}
  <p>Resolved by {{ a.resolved_by }}: <strong>{{ (a.outcome or '') | replace('_', ' ') }}</strong>.</p>
  {% else %}
  <p>After the visit, record what the crew found (confirmed theft, false alarm, …) on the alert page. It takes the suspicion off the work list and is what the model learns from.</p>
  <p><a id="outcome-link" href="/alerts/{{ a.id | seg }}{{ lang_q }}#resolve-form">Enter the inspection outcome →</a></p>
  {% endif %}
</section>
</div>

<section class="charts" id="pack-daily">
  <h2>Days before and after the onset</h2>
  {% if chart %}<figure><h3 class="chart-title">{{ chart.title }}</h3>{{ chart.svg | safe }}<figcaption>{{ chart.note }}</figcaption></figure>
  {% else %}<p class="muted">This alert's record carries no daily energy.</p>{% endif %}
</section>

<div class="cols">
<section id="pack-shape">
  <h2>Attack shape</h2>
  {% if it.shape %}
  <p><strong id="pack-shape-name">{{ it.shape }}</strong>{% if it.shape_words %}: {{ it.shape_words }}{% endif %}</p>
  {% if it.shape_shares %}
  <table class="shares"><thead><tr><th>Shape</th><th class="num">Share of the run's evidence</th></tr></thead>
    {% for sh, share in it.shape_shares %}<tr{% if sh == it.shape %} class="best"{% endif %}><td>{{ sh }}</td><td class="num">{{ (share * 100) | num(0) }} %</td></tr>{% endfor %}
  </table>
  {% endif %}
  {% else %}<p class="muted">No attack shape: this alert comes from a rule ({{ a.subtype | replace('_', ' ') }}), not from the theft model.</p>{% endif %}
</section>
<section id="pack-corroboration">
  <h2>Corroboration</h2>
  {% if it.corroboration %}
  <ul>{% for c in it.corroboration %}<li>{{ c | replace('_', ' ') }}</li>{% endfor %}</ul>
  {% else %}<p class="muted">No other open condition on this meter corroborates it.</p>{% endif %}
</section>
</div>

<section id="pack-peers">
  <h2>Peers</h2>
  {% if it.peer_level is none %}<p class="muted">No peer comparison in this alert's record.</p>
  {% elif it.peers_moved %}<p class="peers moved">The area's peers moved too: their median daily level is {{ it.peer_level | num(2) }} (log ratio, today against usual; |x| ≥ {{ peer_moved }}). An area-wide cause (weather, a holiday, the supply) may explain part of the drop.</p>
  {% else %}<p class="peers steady">The area's peers held steady (median daily log ratio {{ it.peer_level | num(2) }}, |x| &lt; {{ peer_moved }}): the change is this meter's own.</p>{% endif %}
</section>

<section id="pack-indicators">
  <h2>Indicators</h2>
  {% if it.figures or it.indicators %}
  <table class="evidence">
    {% for k, v in it.figures %}<tr><th>{{ k }}</th><td>{{ v | num(2) }}</td></tr>{% endfor %}
    {% for k, v in it.indicators %}<tr><th>{{ k | replace('_', ' ') }}</th><td>{{ v | num(3) }}</td></tr>{% endfor %}
  </table>
  {% endif %}
  {% if evidence %}
  <table class="evidence">{% for k, v in evidence %}<tr><th>{{ k | replace('_', ' ') }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
  {% endif %}
  {% if not (it.figures or it.indicators or evidence) %}<p class="muted">No indicators in this alert's record.</p>{% endif %}
</section>
{% endblock %}
"""

ERROR = """{% extends "base.html" %}
{% block content %}
<section class="errorpage">
  <h1>{{ code }} {{ reason }}</h1>
  <p>{{ detail }}</p>
  <p><a href="/alerts">Back to the inbox</a></p>
</section>
{% endblock %}
"""

TEMPLATES = {
    "base.html": BASE, "login.html": LOGIN, "inbox.html": INBOX, "alert.html": ALERT,
    "customer.html": CUSTOMER, "area.html": AREA, "compliance.html": _COMPLIANCE, "audit.html": AUDIT, "worklist.html": WORKLIST, "pack.html": PACK, "users.html": USERS, "error.html": ERROR,
}

CSS = """
:root { --fg:#1d1d1f; --muted:#6b6b6b; --line:#ddd; --accent:#2f6ea8; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", sans-serif; color:var(--fg); background:#f6f7f9; }
header.top { display:flex; align-items:center; gap:24px; padding:10px 20px; background:#1f3b57; color:#fff; }
header.top a { color:#fff; text-decoration:none; }
header.top .brand { font-weight:700; font-size:16px; }
header.top nav a { margin-right:14px; opacity:.85; }
header.top nav a.active { opacity:1; border-bottom:2px solid #fff; }
header.top .who { margin-left:auto; display:flex; gap:10px; align-items:center; }
header.top .role { opacity:.75; font-size:12px; }
header.top .lang { border:1px solid rgba(255,255,255,.5); border-radius:3px; padding:1px 6px; font-size:12px; }
main { max-width:1180px; margin:0 auto; padding:18px 20px 40px; }
h1 { font-size:21px; margin:6px 0 12px; } h2 { font-size:16px; margin:18px 0 8px; } h3 { font-size:14px; }
a { color:var(--accent); }
.muted { color:var(--muted); font-weight:normal; font-size:12px; }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size:12px; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
thead th { background:#eef1f5; font-weight:600; font-size:12px; }
td.msg { max-width:460px; } td.empty { color:var(--muted); text-align:center; padding:20px; }
.badge { display:inline-block; padding:1px 7px; border-radius:9px; font-size:11px; font-weight:600; text-transform:uppercase; color:#fff; background:#777; }
.badge.sev-critical { background:#c62828; } .badge.sev-warning { background:#e08a00; } .badge.sev-info { background:#2f6ea8; }
.state { font-size:12px; padding:1px 6px; border-radius:3px; border:1px solid var(--line); background:#fff; font-weight:normal; }
.state.new { border-color:#c62828; color:#c62828; } .state.acknowledged { border-color:#e08a00; color:#a35f00; } .state.resolved { border-color:#2e7d32; color:#2e7d32; }
.cleared { font-size:11px; color:#2e7d32; margin-left:6px; }
.filters { display:flex; gap:14px; align-items:end; margin-bottom:12px; flex-wrap:wrap; }
.filters label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); }
.pager { display:flex; gap:18px; margin-top:10px; align-items:center; }
.cols { display:grid; grid-template-columns: 1fr 1fr; gap:24px; }
.facts dl { display:grid; grid-template-columns: 130px 1fr; gap:4px 10px; background:#fff; border:1px solid var(--line); padding:10px; margin:0; }
.facts dt { color:var(--muted); }
.facts dd { margin:0; }
.actions form { background:#fff; border:1px solid var(--line); padding:10px; margin-bottom:10px; display:flex; flex-direction:column; gap:8px; }
label { display:flex; flex-direction:column; gap:3px; }
input, select, textarea { font:inherit; padding:5px 6px; border:1px solid #bbb; border-radius:3px; }
button { font:inherit; padding:6px 14px; border:0; border-radius:3px; background:var(--accent); color:#fff; cursor:pointer; align-self:flex-start; }
button.link { background:none; color:inherit; padding:0; text-decoration:underline; }
form.inline { display:inline; }
.message { font-size:16px; background:#fff; border-left:4px solid var(--accent); padding:10px 12px; }
figure { margin:10px 0; background:#fff; border:1px solid var(--line); padding:8px; }
figure svg { max-width:100%; height:auto; }
figcaption { color:var(--muted); font-size:12px; }
h3.chart-title { margin:2px 0 4px; font-size:13px; font-weight:600; }
.evidence th { width:220px; color:var(--muted); font-weight:normal; }
.notes { list-style:none; padding:0; } .notes li { background:#fff; border:1px solid var(--line); padding:8px 10px; margin-bottom:6px; }
.notes p { margin:4px 0 0; white-space:pre-wrap; }
.source.unavailable { color:#a35f00; } .source.live { color:#2e7d32; }
.flash { background:#e8f4ea; border:1px solid #b9dcbf; padding:8px 12px; }
.error { background:#fdecea; border:1px solid #f5c2bd; padding:8px 12px; }
section.login { max-width:360px; margin:60px auto; background:#fff; border:1px solid var(--line); padding:20px 24px; }
section.login form { display:flex; flex-direction:column; gap:12px; }
.crumbs { margin:0; }
td.verdict.ok { color:#2e7d32; } td.verdict.bad { color:#c62828; font-weight:600; } td.verdict.running { color:var(--muted); }
th.num, td.num { text-align:right; } td.nowrap { white-space:nowrap; }
.rule { background:#fff; border-left:4px solid var(--accent); padding:6px 10px; }
.worklist td.shape { max-width:260px; }
.shares tr.best td { font-weight:600; }
.peers.moved { color:#a35f00; }
@media (max-width: 800px) { .cols { grid-template-columns: 1fr; } }
"""

"""`meterwatch notify check | send-test | run` as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.notify.receivers import Alertmanager, SmtpReceiver, WebhookReceiver, wait_for

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = """meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care
M1,C1,A1,A,220,mgr-01,residential,false,false
M2,C2,A1,A,220,mgr-02,residential,false,false
"""


def notify(*args, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
    e.update({f"METERWATCH_{k.upper()}": str(v) for k, v in env.items()})
    return subprocess.run([sys.executable, "-m", "stream.cli", "notify", *args], env=e, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_check_validates_managers_against_the_registry(tmp_path):
    (tmp_path / "reg.csv").write_text(REGISTRY)
    m = tmp_path / "managers.csv"
    m.write_text("manager_id,name,email,webhook_url,language,quiet_hours,digest\n"
                 "mgr-01,Li,li@example.cn,,zh-CN,22:00-07:00,daily@08:30\n")
    r = notify("check", "--managers", str(m), "--registry", str(tmp_path / "reg.csv"))
    assert r.returncode == 1
    assert "mgr-01" in r.stdout and "quiet 22:00-07:00" in r.stdout and "daily@08:30" in r.stdout
    assert "not in the managers file" in r.stdout and "mgr-02" in r.stdout
    m.write_text(m.read_text() + "mgr-02,Ann,,https://h.example/a,en,,\n")
    r = notify("check", "--managers", str(m), "--registry", str(tmp_path / "reg.csv"))
    assert r.returncode == 0 and "every account manager in the registry (2)" in r.stdout
    m.write_text(m.read_text() + "mgr-03,Bo,,,en,,\n")
    r = notify("check", managers=m)
    assert r.returncode != 0 and f"{m}:4: manager 'mgr-03' has no channel" in r.stderr


def test_check_reports_webhooks_aimed_at_non_public_addresses(tmp_path):
    m = tmp_path / "managers.csv"
    m.write_text("manager_id,name,email,webhook_url,language\n"
                 "mgr-01,Li,,http://169.254.169.254/latest/meta-data,en\n"
                 "mgr-02,Ann,,http://localhost:8080/hook,en\n"
                 "mgr-03,Bo,,https://[::ffff:10.0.0.7]/hook,en\n"
                 "mgr-04,Cy,,https://93.184.216.34/hook,en\n")
    r = notify("check", "--managers", str(m), webhook_secret="k")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "mgr-01: webhook would be refused: webhook address 169.254.169.254 is link-local" in r.stdout
    assert "mgr-02: webhook would be refused: webhook address 127.0.0.1 is loopback" in r.stdout
    assert "mgr-03: webhook would be refused: webhook address 10.0.0.7 is private" in r.stdout
    assert "mgr-04" not in r.stdout.split("managers OK")[1]
    assert "3 webhook(s) aimed at non-public addresses" in r.stdout
    r = notify("check", "--managers", str(m), webhook_secret="k",
               notify_webhook_allow_networks="169.254.169.254/32,127.0.0.0/8,::1/128,10.0.0.0/8")
    assert r.returncode == 0 and "every webhook (4) resolves to an allowed address" in r.stdout


def test_send_test_reaches_a_managers_channels_and_the_control_room(tmp_path):
    smtp, hooks, am = SmtpReceiver().start(), WebhookReceiver("k").start(), Alertmanager().start()
    try:
        m = tmp_path / "managers.csv"
        m.write_text("manager_id,name,email,webhook_url,language\n"
                     f"mgr-01,Li,li@example.cn,{hooks.url('/li')},zh-CN\n")
        env = dict(managers=m, smtp_port=smtp.port, webhook_secret="k",
                   alertmanager_url=am.url, notify_webhook_allow_networks="127.0.0.0/8")
        r = notify("send-test", "--manager", "mgr-01", **env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "email: accepted" in r.stdout and "webhook: accepted" in r.stdout
        (mail,) = smtp.raw
        assert "测试消息" in mail.part("plain") and mail.rcpt == ["li@example.cn"]
        (h,) = hooks.raw
        assert h.path == "/li" and h.body["alert"]["subtype"] == "test" and hooks.bad == []
        r = notify("send-test", "--manager", "control_room", "--channel", "alertmanager", **env)
        assert r.returncode == 0 and "alertmanager: accepted" in r.stdout
        wait_for(lambda: any(a["labels"]["alertname"] == "meterwatch_data_quality_test"
                             for a in am.alerts()), 10)
        smtp.stop()
        r = notify("send-test", "--manager", "mgr-01", "--channel", "email", **env)
        assert r.returncode == 1 and "email: FAILED (transient)" in r.stdout
        r = notify("send-test", "--manager", "nobody", **env)
        assert r.returncode != 0 and "no manager 'nobody'" in r.stderr
    finally:
        smtp.stop()
        hooks.stop()
        am.close()


def test_run_refuses_an_unusable_configuration(tmp_path):
    (tmp_path / "reg.csv").write_text(REGISTRY)
    m = tmp_path / "managers.csv"
    m.write_text("manager_id,email,webhook_url,language\nmgr-01,,https://h.example/x,en\n")
    r = notify("run", registry=tmp_path / "reg.csv", managers=m)
    assert r.returncode != 0 and "no broker" in r.stderr
    r = notify(broker="127.0.0.1:1", registry=tmp_path / "reg.csv", managers=m,
               data_dir=tmp_path / "data")
    assert r.returncode != 0 and "METERWATCH_WEBHOOK_SECRET" in r.stderr
    r = notify(broker="127.0.0.1:1", managers=m, webhook_secret="k")
    assert r.returncode != 0 and "no meter registry" in r.stderr
    r = notify("run", smtp_port="99999")
    assert r.returncode != 0 and "smtp_port" in r.stderr

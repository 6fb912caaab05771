"""Webhooks reach public addresses only, unless the operator allows a network: checked
on the addresses the connection goes to, not on the URL's text."""

from __future__ import annotations

import asyncio

import pytest

from stream.notify.channels import Channels, DeliveryError
from stream.notify.netguard import AddressPolicy
from stream.settings import SettingsError, load_settings
from tests.notify.receivers import WebhookReceiver
from tests.notify.test_channels import SECRET, alert, deliveries, send, settings


@pytest.mark.parametrize("ip, kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("10.1.2.3", "private"), ("172.16.0.9", "private"), ("192.168.1.1", "private"),
    ("fd00::5", "private"), ("100.64.0.1", "special-purpose"),
    ("224.0.0.251", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "private"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
])
def test_non_public_addresses_are_refused_by_default(ip, kind):
    reason = AddressPolicy().refusal(ip)
    assert reason is not None and f"is {kind}" in reason
    assert "METERWATCH_NOTIFY_WEBHOOK_ALLOW_NETWORKS" in reason


@pytest.mark.parametrize("ip", ["93.184.216.34", "2606:4700::6810:84e5", "::ffff:93.184.216.34"])
def test_public_addresses_are_allowed(ip):
    assert AddressPolicy().refusal(ip) is None


def test_allowed_networks_let_exactly_their_addresses_through():
    s = load_settings(env={"METERWATCH_NOTIFY_WEBHOOK_ALLOW_NETWORKS": "10.20.0.0/16, ::1/128"})
    p = AddressPolicy.from_settings(s)
    assert p.refusal("10.20.3.4") is None and p.refusal("::1") is None
    assert p.refusal("10.21.0.1") is not None and p.refusal("127.0.0.1") is not None


def test_a_bad_network_in_the_setting_is_a_settings_error_naming_it():
    with pytest.raises(SettingsError, match=r"notify_webhook_allow_networks .*'10.0.0.0/33'"):
        load_settings(env={"METERWATCH_NOTIFY_WEBHOOK_ALLOW_NETWORKS": "10.0.0.0/33"})


@pytest.fixture
def hooks():
    h = WebhookReceiver(SECRET).start()
    yield h
    h.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_by_default_a_webhook_to_loopback_is_refused_permanently_and_nothing_is_sent(hooks, host):
    # "localhost" is a name: refused on what it resolves to, where the connection is made
    (d,) = deliveries(alert(), email="", hook=f"http://{host}:{hooks.port}/hook?token=t0k-77")
    with pytest.raises(DeliveryError) as e:
        send(settings(notify_webhook_allow_networks=""), d)
    assert e.value.permanent and "loopback" in str(e.value) and "refused" in str(e.value)
    assert "t0k-77" not in str(e.value)
    assert hooks.raw == [] and hooks.bad == []  # no request reached the receiver


def test_the_cloud_metadata_address_is_refused_without_a_connection_attempt():
    (d,) = deliveries(alert(), email="", hook="http://169.254.169.254/latest/meta-data/")
    with pytest.raises(DeliveryError) as e:
        send(settings(notify_webhook_allow_networks=""), d)
    assert e.value.permanent and "169.254.169.254 is link-local" in str(e.value)


def test_a_legacy_numeric_ip_form_is_refused_permanently():
    (d,) = deliveries(alert(), email="", hook="http://2130706433:8080/hook")  # 127.0.0.1
    with pytest.raises(DeliveryError) as e:
        send(settings(notify_webhook_allow_networks=""), d)
    assert e.value.permanent and "refused" in str(e.value)


def test_an_allowed_loopback_network_is_delivered_to(hooks):
    (d,) = deliveries(alert(), email="", hook=f"http://localhost:{hooks.port}/hook")
    send(settings(notify_webhook_allow_networks="127.0.0.0/8,::1/128"), d)
    assert len(hooks.raw) == 1 and hooks.bad == []


def test_the_alertmanager_url_of_the_operator_is_not_subject_to_the_webhook_guard():
    # Alertmanager is configured by the operator, usually on an internal address.
    ch = Channels(settings(notify_webhook_allow_networks=""))

    async def go():
        try:
            await ch.post_alertmanager("http://127.0.0.1:1", [])
        finally:
            await ch.close()
    with pytest.raises(DeliveryError) as e:
        asyncio.run(go())
    assert not e.value.permanent and "refused:" not in str(e.value)  # only "cannot connect"

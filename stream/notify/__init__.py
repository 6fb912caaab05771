"""The notifier (`meterwatch notify`): alerts reach people.

managers.py  the managers CSV (channels, language, quiet hours, digest option)
routing.py   who is told what and when (pure functions)
templates.py email subject, text and HTML in en and zh-CN
channels.py  SMTP, signed webhooks, Prometheus Alertmanager (v2 API)
netguard.py  where a webhook may go: public addresses, checked where it connects
scrub.py     what may be repeated of others' text: redacted excerpts, one-line headers
service.py   the Faust agent on the alerts topic, the outbox sender, housekeeping
cli.py       `meterwatch notify [run|check|send-test]`

See the section "Alerts: managers and channels" of the project README.
"""

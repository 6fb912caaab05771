"""The account manager console: a web app over the alert store (``meterwatch console``).

See the section "Console" of the project README; the app factory is :func:`stream.console.app.make_app`.
"""

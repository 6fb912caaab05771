"""The account manager console: a web app over the alert store (``meterwatch console``).

See ``stream/console/README.md``; the app factory is :func:`stream.console.app.make_app`.
"""

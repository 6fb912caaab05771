"""The worker process: ingest (any-keyed readings to the by-area topic), process (each
area's readings through the detectors, alerts out, state in the changelogged table),
the timers that watch them, and the web views that read the state.

Where things are: :mod:`.build` wires it all; :mod:`.ingest` and :mod:`.process` are the
two agents; :mod:`.progress` the protocol that keeps the process agent from skipping an
offset; :mod:`.processing` the Kafka-free core both agents call; :mod:`.state` the area
state blob; :mod:`.metrics` the worker's Prometheus series.
"""

"""Development tools: what a developer runs on one machine, never a deployment.

:mod:`.kafka_local` starts a single-node KRaft broker from Kafka's jars (``make demo``,
the tests' session broker, bench/); :mod:`.feed` publishes a simulated fleet or a file
of historic readings; :mod:`.demo` is ``meterwatch demo`` and :mod:`.demo_score` its
final score against the simulator's ground truth; :mod:`.cli` registers ``demo``,
``simulate``, ``replay`` and ``kafka`` on ``meterwatch``'s argparse tree.

The runtime services (stream/worker/, stream/notify/, stream/console/) import nothing
from here.
"""

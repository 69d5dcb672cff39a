"""The fault-injection suite (``make chaos``): real processes, real faults, a Jepsen-style checker.

* :mod:`chaos.cluster` — the system under test on a PostgreSQL cluster and a Redis server of its
  own (so it can stop them), with the api and worker processes started as containers start them.
* :mod:`chaos.target` — an HTTP target that logs every request it receives.
* :mod:`chaos.load` — a client that creates jobs and records what CreateJob answered.
* :mod:`chaos.checker` — attempted, acknowledged, delivered, lost, unexpected, duplicated.
* :mod:`chaos.scenarios` — the nine faults, each at a short (CI) and a full scale.
"""

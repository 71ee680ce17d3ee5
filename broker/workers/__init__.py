"""Worker processes: one node, N processes on one port, behaving as one process.

:mod:`~broker.workers.supervisor` is the main process (binds, supervises,
reloads, stops); :mod:`~broker.workers.child` a worker; the
:mod:`~broker.workers.link` between them carries what
:mod:`~broker.workers.central` keeps for all (pub/sub, memory caches, the
node's reports) and :mod:`~broker.workers.shared` uses in each worker.
See ``docs/workers.md``.
"""

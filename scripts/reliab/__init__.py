"""`make reliability`: fault trials against real processes, with figures.

Every trial runs the real ``dist`` command (a subprocess) against a real
Distribution registry, usually through the fault-injecting proxy of
``tests/harness``, then classifies what happened (see ``outcome``). The fault
kinds live in ``network`` (drops, restarts, stalls, 429/5xx), ``crash``
(SIGKILL of ``dist``, disk full) and ``concurrency`` (many pullers, one root);
``suite`` says how many trials each kind gets.
"""

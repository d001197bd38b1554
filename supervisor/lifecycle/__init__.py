"""One actor's life on the supervisor side.

- ``_states``: the states, the legal moves, and the log event of each.
- ``_machine``: ``decide(life, event, policy, now) -> (life, actions)``, every lifecycle decision, pure.
- ``_policy``: the restart policy as pure functions (should_restart, backoff_delay, intensity_allows).
- ``_handle``: ``ActorHandle``, the I/O shell that feeds events in and carries actions out; one ``_Run`` per child.
- ``_task``: in-process task actors (``kind = "task"``).
- ``_heartbeat``: a run's heartbeat deadline, and the wait for a missed one.
- ``_stall``: ``LoopWatch``, which notices a stalled supervisor and moves every deadline by the gap.
- ``_health``: counting failed health checks, and running an in-process check safely.
- ``_observers``: transition, beat and health records, and the ``Observer`` read models implement.
"""

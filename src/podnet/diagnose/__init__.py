"""From symptom to cause: the seed article's five debugging steps as a program, and the classic failures.

- ``catalogue``: the faults ``podnet break`` injects and the cause ids ``podnet diagnose`` names (one id
  per failure: a fault made by ``break`` and the same fault made by hand get the same cause id);
- ``steps``: which probes each of the five steps sends (pure planning);
- ``checks``: the state checks, reading kernel state (a snapshot) and the lab's declared objects (pure);
- ``locate``: where a failing probe's packet stops (the simulator over the snapshot) and why (pure);
- ``report``: the typed result, its JSON (schema ``podnet.dev/diagnose/v1``) and text (pure);
- ``run``: the orchestration (real probes from the source pod, the live snapshot);
- ``faults``: ``break`` and ``repair`` done to a real lab the way each failure happens in life.

See docs/diagnose.md.
"""

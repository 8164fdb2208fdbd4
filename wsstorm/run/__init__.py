"""The runner: scenarios, the fault schedule, and the ``run``/``compare``/``demo`` commands.

Owns the scenario file format and the shipped scenarios, firing faults on schedule, planning
and supervising the process tree of a run (target, Locust, report children), and live progress.
Builds reports by running ``python -m wsstorm.analysis`` in a child process and reading the
result file it writes; never imports analysis or Locust itself.
"""

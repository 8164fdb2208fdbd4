"""The fleet simulator: the same policies against a model of the target, at fleet scale.

Owns the fleet model (numpy, vectorised over clients), ``wsstorm simulate`` and its sweeps, the
AWS contention experiment, and measuring the real target's service times to feed the model.
Writes run folders that analysis reads like any other; computes its summary with the very metric
functions of :mod:`wsstorm.analysis.metrics`. Never imports Locust or the load side.
"""

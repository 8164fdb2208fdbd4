"""Analysis: run folder -> DataFrames -> metrics -> charts -> HTML/PNG reports.

Reads only run folders; never imports Locust (nor the Locust-facing parts of
:mod:`wsstorm`).
"""

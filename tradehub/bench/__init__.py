"""Benchmarks: each prints the hub's figure beside a raw baseline measured in the same run (docs/benchmarks.md).

`common` holds what they share: the synthetic declarations, the raw-INSERT
baselines and the scratch PostgreSQL schemas and databases.
"""

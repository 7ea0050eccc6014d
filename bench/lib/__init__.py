"""Pieces of bench/run.py: cgroups, the compose-defined stack on bare metal, sampling, checks."""

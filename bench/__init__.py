"""Assay's benchmark: a closed-loop load generator against a real server, beside the in-process ceiling."""

"""Assay: a Takeoff-compatible inference server for scoring text with transformer models."""

__version__ = "0.1.0"

"""Measure how long a training loop waits on its data (see ``measure`` for any iterable)."""

from .stall import RunStats, Spikes, diagnose, measure, summarize

__all__ = ["RunStats", "Spikes", "diagnose", "measure", "summarize"]

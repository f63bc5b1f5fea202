"""Measurement engine: weight size, latency, peak RAM/VRAM, environment, process isolation.

Submodules import torch lazily (inside functions) so that importing ``mcval.measure`` from a
torch-free command never pulls it in; ``mcval.measure.size``/``latency``/``memory`` are the
building blocks; ``measurement.measure_submission`` runs ``device_job`` in a child per device
(``supervisor`` on the parent side, ``forkserver`` and ``child`` on the other) and merges.
"""

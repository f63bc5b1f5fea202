"""Measurement engine: weight size, latency, peak RAM/VRAM, environment, process isolation.

Submodules import torch lazily (inside functions) so that importing ``mcval.measure`` from a
torch-free command never pulls it in; ``mcval.measure.size``/``latency``/``memory`` are the
building blocks, ``runner.measure_submission`` puts them together in spawned children.
"""

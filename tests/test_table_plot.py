"""The results plot: Pareto front, axis choices, and byte-stable SVG output."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from fixtures.records import make_record, whisper_family

from mcval.policy import Policy
from mcval.render.plot import Point, headline_metric, latency_field, pareto_front, render_plot


def point(x: float, y: float, label: str) -> Point:
    return Point(x=x, y=y, team="t", label=label, baseline=False)


def test_pareto_front_lower_is_better() -> None:
    points = [point(100, 4.0, "a"), point(50, 4.5, "b"), point(200, 3.8, "c"), point(150, 4.6, "d")]
    assert [p.label for p in pareto_front(points, higher_is_better=False)] == ["b", "a", "c"]


def test_pareto_front_higher_is_better_and_ties() -> None:
    points = [point(10, 0.80, "a"), point(10, 0.85, "b"), point(5, 0.70, "c"), point(20, 0.85, "d")]
    assert [p.label for p in pareto_front(points, higher_is_better=True)] == ["c", "b"]


def test_headline_metric_and_latency_choice() -> None:
    records = whisper_family()
    assert headline_metric("automatic-speech-recognition", records) == "wer"
    assert latency_field(records) == "latency_gpu_ms"  # 2 rows have GPU, 2 have CPU: GPU wins
    cpu_only = [make_record("t/a", "m/a", "A", latency_cpu_ms=5.0, quality={"accuracy": 0.9})]
    assert latency_field(cpu_only) == "latency_cpu_ms"
    assert headline_metric("text-classification", cpu_only) == "accuracy"
    assert headline_metric("causal-lm", []) is None


@pytest.mark.slow
def test_svg_is_byte_stable_and_dateless() -> None:
    records = [
        *whisper_family(),
        make_record(
            "a_team/qwen",
            "Qwen/Qwen2.5-1.5B",
            "FP32 $x$ | <script>",
            task="causal-lm",
            weights_mb=5888.8,
            latency_gpu_ms=2619.1,
            quality={"perplexity": 12.3},
        ),
    ]
    first = render_plot(records, Policy())
    second = render_plot(list(reversed(records)), Policy())
    assert first == second
    svg = first.decode("utf-8")
    assert "<dc:date>" not in svg
    assert "Matplotlib" not in svg
    root = ET.fromstring(first)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # One panel pair per task: 4 axes, each with its own clip path id from the fixed salt.
    assert len(re.findall(r'<g id="axes_\d+">', svg)) == 4
    changed = render_plot(records[:-1], Policy())
    assert changed != first


@pytest.mark.slow
def test_plot_without_results() -> None:
    svg = render_plot([], Policy())
    assert svg == render_plot([], Policy())
    assert svg.startswith(b"<?xml")

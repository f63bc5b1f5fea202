"""Verdict policy: strict size/quality, hardware-aware latency/memory, sanity rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from tiny_models import write_submission

from mcval.figures import Allowance, Delta, format_allowance, format_delta
from mcval.policy import Policy
from mcval.submission import LoadedSubmission, load_submission
from mcval.verdict import Finding, MeasuredFigures, MetricVerdict, judge, same_hardware

SUBMISSION = """\
schema: 1
team: t1
model:
  {{id: org/bert-tiny, revision: 0123456789abcdef0123456789abcdef01234567,
   task: text-classification}}
method:
  name: {method}
{baseline}evaluation:
  dataset: {{path: nyu-mll/glue, name: sst2, split: validation}}
reported:
  weights_mb: {weights}
  latency_cpu_ms: {cpu}
  ram_mb: 310.0
  {vram}quality: {{accuracy: {acc}, macro_f1: 0.80}}
  hardware: {{cpu: {hw}}}
"""


def make(
    tmp_path: Path,
    *,
    weights: float = 16.73,
    cpu: float = 12.0,
    acc: float = 0.81,
    hw: str = "AMD EPYC 7B13",
    method: str = "fp32",
    baseline: str | None = None,
    vram: str = "",
    name: str = "row",
) -> LoadedSubmission:
    text = SUBMISSION.format(
        weights=weights,
        cpu=cpu,
        acc=acc,
        hw=hw,
        method=method,
        baseline=f"  baseline: {baseline}\n" if baseline else "",
        vram=vram,
    )
    path = write_submission(tmp_path, "t1", name, textwrap.dedent(text))
    return load_submission(path, tmp_path)


RUNNER = MeasuredFigures(
    weights_mb=16.73,
    latency_cpu_ms=12.4,
    ram_mb=300.0,
    quality={"accuracy": 0.8125, "macro_f1": 0.8031},
    not_applicable={},
    cpu="AMD EPYC 7B13 64-Core Processor",
    gpu=None,
)


def by_field(verdict, field):  # type: ignore[no-untyped-def]
    return next(m for m in verdict.metrics if m.field == field)


def delta(m: MetricVerdict) -> str:
    """The difference as the comment writes it."""
    return format_delta(m.delta)


def tolerance(m: MetricVerdict) -> str:
    return format_allowance(m.tolerance)


def test_honest_submission_passes(tmp_path: Path) -> None:
    verdict = judge(make(tmp_path), RUNNER, Policy())
    assert verdict.status == "pass"
    size = by_field(verdict, "weights_mb")
    assert (size.status, delta(size), tolerance(size)) == ("pass", "0.0 %", "±1 % or ±0.01 MB")
    acc = by_field(verdict, "quality.accuracy")
    assert (acc.status, delta(acc), tolerance(acc)) == ("pass", "-0.25 pp", "±1 pp")
    cpu = by_field(verdict, "latency_cpu_ms")
    assert (cpu.status, delta(cpu)) == ("pass", "-3.2 %")  # same CPU: tolerance applies
    gpu = by_field(verdict, "latency_gpu_ms")
    assert gpu.status == "not_measured"
    assert verdict.failures == []


def test_wrong_size_fails_on_its_line(tmp_path: Path) -> None:
    verdict = judge(make(tmp_path, weights=66.9), RUNNER, Policy())
    assert verdict.status == "fail"
    size = by_field(verdict, "weights_mb")
    assert (size.status, delta(size), size.line) == ("fail", "+299.9 %", 11)
    assert size.note == "outside ±1 % or ±0.01 MB"
    assert verdict.failures == ["Weight size (MB): outside ±1 % or ±0.01 MB"]


def test_quality_outside_one_point_fails(tmp_path: Path) -> None:
    verdict = judge(make(tmp_path, acc=0.84), RUNNER, Policy())
    acc = by_field(verdict, "quality.accuracy")
    assert (acc.status, delta(acc), acc.line) == ("fail", "+2.75 pp", 14)


def test_latency_from_other_hardware_is_informational(tmp_path: Path) -> None:
    verdict = judge(make(tmp_path, cpu=40.0, hw="Intel i7-12700H"), RUNNER, Policy())
    cpu = by_field(verdict, "latency_cpu_ms")
    assert (cpu.status, cpu.note) == ("info", "other hardware: shown for information")
    assert verdict.status == "pass"


def test_implausible_gap_is_flagged_even_on_other_hardware(tmp_path: Path) -> None:
    verdict = judge(make(tmp_path, cpu=2641.97, hw="Intel i7-12700H"), RUNNER, Policy())
    cpu = by_field(verdict, "latency_cpu_ms")
    assert cpu.status == "fail"
    assert (
        cpu.note == "implausible: 213.1× the runner's figure (more than ×10 even on other hardware)"
    )
    assert verdict.status == "fail"


def test_same_hardware_applies_tolerance(tmp_path: Path) -> None:
    verdict = judge(make(tmp_path, cpu=20.0), RUNNER, Policy())
    cpu = by_field(verdict, "latency_cpu_ms")
    assert (cpu.status, cpu.note) == ("fail", "outside ±15 %")


@pytest.mark.parametrize(
    ("reported", "runner", "same"),
    [
        ("RTX 3060 Laptop", "NVIDIA GeForce RTX 3060 Laptop GPU", True),
        ("Intel i7-12700H", "12th Gen Intel(R) Core(TM) i7-12700H", True),
        ("Tesla T4", "Tesla T4", True),
        ("A100", "NVIDIA A100-SXM4-80GB", True),
        ("Tesla T4", "NVIDIA H100 80GB HBM3", False),
        ("i5-8250U", "12th Gen Intel(R) Core(TM) i7-12700H", False),
        (None, "Tesla T4", False),
        ("laptop", "Tesla T4", False),
    ],
)
def test_hardware_matching(reported: str | None, runner: str, same: bool) -> None:
    assert same_hardware(reported, runner) is same


def test_sanity_zero_size(tmp_path: Path) -> None:
    # mcval check refuses a 0 MB size (tests/test_student_mistakes.py); the verdict's own
    # rule still holds for a submission built in code.
    loaded = make(tmp_path)
    loaded.submission.reported.weights_mb = 0.0
    verdict = judge(loaded, RUNNER, Policy())
    codes = [(f.code, f.severity, f.line) for f in verdict.findings]
    assert ("zero-size", "fail", 11) in codes
    assert verdict.status == "fail"


def test_sanity_vram_without_gpu_time(tmp_path: Path) -> None:
    verdict = judge(make(tmp_path, vram="vram_mb: 512\n  "), RUNNER, Policy())
    (finding,) = verdict.findings
    assert finding.code == "vram-without-gpu-time"
    assert finding.message == "VRAM is reported but no GPU latency: the model never ran on a GPU"
    assert finding.line == 14


def test_sanity_gpu_time_with_zero_vram(tmp_path: Path) -> None:
    verdict = judge(
        make(tmp_path, vram="vram_mb: 0\n  latency_gpu_ms: 2641.97\n  "), RUNNER, Policy()
    )
    assert [f.code for f in verdict.findings] == ["gpu-time-without-vram"]


def test_sanity_compressed_larger_than_baseline(tmp_path: Path) -> None:
    make(tmp_path, name="base")
    loaded = make(tmp_path, method="INT8", baseline="t1/base", weights=20.0)
    runner = RUNNER.model_copy(update={"weights_mb": 20.0})
    verdict = judge(loaded, runner, Policy(), baseline=RUNNER)
    (finding,) = verdict.findings
    assert finding.code == "larger-than-baseline"
    assert finding.message == (
        "the compressed model (20.00 MB) is larger than its baseline t1/base (16.73 MB); "
        "explain why in method.notes"
    )
    assert verdict.status == "fail"
    smaller = judge(
        loaded, RUNNER.model_copy(update={"weights_mb": 4.5}), Policy(), baseline=RUNNER
    )
    assert smaller.findings == []


def test_larger_than_baseline_is_one_rule_that_notes_can_explain(tmp_path: Path) -> None:
    """The rule lives in the verdict alone (the claim checks no longer repeat it): notes
    that say why silence it, blank notes do not, and 0.1 % of growth is no growth."""
    make(tmp_path, name="base")
    explained = make(tmp_path, method="INT8", baseline="t1/base", weights=20.0)
    explained.submission.method.notes = "int8 keeps an fp32 copy of the tied lm_head"
    grown = RUNNER.model_copy(update={"weights_mb": 20.0})
    assert judge(explained, grown, Policy(), baseline=RUNNER).findings == []
    explained.submission.method.notes = "   "
    (finding,) = judge(explained, grown, Policy(), baseline=RUNNER).findings
    assert (finding.code, finding.severity) == ("larger-than-baseline", "fail")
    assert finding.evidence == {"weights_mb": 20.0, "baseline_weights_mb": 16.73}
    explained.submission.method.notes = None
    barely = RUNNER.model_copy(update={"weights_mb": 16.73 * 1.0005})
    assert judge(explained, barely, Policy(), baseline=RUNNER).findings == []


def test_vram_without_gpu_time_fails_in_the_verdict_only(tmp_path: Path) -> None:
    """One rule, one severity: a sanity rule fails the submission; ``mcval check`` (the
    loader) no longer says the same thing as a mere warning."""
    loaded = make(tmp_path, vram="vram_mb: 512\n  ")
    assert loaded.warnings == []
    assert judge(loaded, RUNNER, Policy()).status == "fail"


def test_differences_and_tolerances_are_numbers_written_in_the_table_language(
    tmp_path: Path,
) -> None:
    verdict = judge(make(tmp_path, cpu=2641.97, hw="Intel i7-12700H"), RUNNER, Policy())
    size = by_field(verdict, "weights_mb")
    assert size.delta == Delta(kind="relative", value=0.0)
    assert size.tolerance == Allowance(relative=0.01, absolute=0.01, unit="MB")
    assert format_allowance(size.tolerance, "ru") == "±1 % или ±0.01 MB"
    acc = by_field(verdict, "quality.accuracy")
    assert acc.delta is not None and (acc.delta.kind, acc.delta.unit) == ("absolute", "pp")
    assert acc.delta.value == pytest.approx(-0.25)
    assert format_delta(acc.delta, "ru") == "-0.25 п.п."
    cpu = by_field(verdict, "latency_cpu_ms")  # other hardware, 213× the runner's figure
    assert (cpu.status, cpu.tolerance) == ("fail", Allowance(factor=10.0))
    assert tolerance(cpu) == "×10"
    bleu = Delta(kind="absolute", value=0.4, unit="")
    assert format_delta(bleu) == "+0.40"


def test_claim_warnings_and_errors(tmp_path: Path) -> None:
    claim = Finding(
        code="claim-int8-no-int8-weights",
        severity="warning",
        message="claims int8 but no int8 weights",
    )
    verdict = judge(make(tmp_path), RUNNER, Policy(), notes=[claim])
    assert [(f.code, f.severity) for f in verdict.findings] == [
        ("claim-int8-no-int8-weights", "warning")
    ]
    assert verdict.status == "pass"
    crashed = judge(
        make(tmp_path), MeasuredFigures(), Policy(), errors=["cpu: timed out after 30 s"]
    )
    assert crashed.status == "error"
    assert crashed.failures == ["cpu: timed out after 30 s"]


def test_not_applicable_device(tmp_path: Path) -> None:
    runner = RUNNER.model_copy(
        update={
            "latency_cpu_ms": None,
            "ram_mb": None,
            "not_applicable": {"cpu": "bnb_4bit needs CUDA"},
        }
    )
    verdict = judge(make(tmp_path), runner, Policy())
    cpu = by_field(verdict, "latency_cpu_ms")
    assert (cpu.status, cpu.note) == ("not_applicable", "bnb_4bit needs CUDA")
    assert verdict.status == "pass"


STARVED = "other load starved this process (CPU use 31 % of 2 threads)"


def test_unstable_figure_neither_passes_nor_fails(tmp_path: Path) -> None:
    """The team reported 12.0 ms on the runner's CPU; a busy runner timed 120.0 ms (10×,
    far outside ±15 %) and marked it unstable: that row decides nothing, and the outcome
    is a re-run, not a failure against the team."""
    runner = RUNNER.model_copy(
        update={"latency_cpu_ms": 120.0, "unstable": {"latency_cpu_ms": STARVED}}
    )
    verdict = judge(make(tmp_path), runner, Policy())
    cpu = by_field(verdict, "latency_cpu_ms")
    assert (cpu.status, cpu.measured, delta(cpu), cpu.line) == ("unstable", 120.0, "-90.0 %", 12)
    assert cpu.note == (
        "could not measure stably: other load starved this process (CPU use 31 % of 2 "
        "threads); re-run"
    )
    assert verdict.status == "unmeasured"
    assert verdict.failures == []
    # Were the same figure stable, the team's 12.0 ms would fail outside ±15 %.
    stable = judge(make(tmp_path), runner.model_copy(update={"unstable": {}}), Policy())
    assert (by_field(stable, "latency_cpu_ms").status, stable.status) == ("fail", "fail")


def test_unstable_figure_blocks_a_pass_even_unreported_or_from_other_hardware(
    tmp_path: Path,
) -> None:
    """A pass puts the runner's figures in the README table: an unstable one must never
    get there, whether the team reported it (other hardware: info) or not (RAM here)."""
    runner = RUNNER.model_copy(
        update={"unstable": {"latency_cpu_ms": STARVED, "ram_mb": "peak RSS moved by 40 %."}}
    )
    verdict = judge(make(tmp_path, cpu=2641.97, hw="Intel i7-12700H"), runner, Policy())
    cpu = by_field(verdict, "latency_cpu_ms")
    assert cpu.status == "unstable"  # not "implausible": the runner's figure is not evidence
    ram = by_field(verdict, "ram_mb")
    assert (ram.status, ram.note) == (
        "unstable",
        "could not measure stably: peak RSS moved by 40 %; re-run",
    )
    assert by_field(verdict, "weights_mb").status == "pass"
    assert verdict.status == "unmeasured"


def test_stable_failure_still_fails_beside_an_unstable_figure(tmp_path: Path) -> None:
    runner = RUNNER.model_copy(update={"unstable": {"latency_cpu_ms": STARVED}})
    verdict = judge(make(tmp_path, weights=66.9), runner, Policy())
    assert by_field(verdict, "latency_cpu_ms").status == "unstable"
    assert verdict.status == "fail"
    assert verdict.failures == ["Weight size (MB): outside ±1 % or ±0.01 MB"]
    crashed = judge(make(tmp_path), runner, Policy(), errors=["cuda: timed out after 30 s"])
    assert crashed.status == "error"


def test_unstable_without_a_reason_says_the_outcome(tmp_path: Path) -> None:
    runner = RUNNER.model_copy(update={"unstable": {"latency_cpu_ms": ""}})
    cpu = by_field(judge(make(tmp_path), runner, Policy()), "latency_cpu_ms")
    assert (cpu.status, cpu.note) == ("unstable", "could not measure stably; re-run")

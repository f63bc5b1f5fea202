"""`mcval validate` orchestration: verdicts, reuse by fingerprint, reports, exit codes.

The measuring child is replaced here by a function returning a fixed Measurement, so
these tests pin the pipeline around it; tests/test_validate_real.py runs the real one.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from tiny_models import write_submission

from mcval.commands.validate import annotations_for, exit_code
from mcval.measure.environment import Environment
from mcval.measure.measurement import Measurement, MeasurementDetails
from mcval.measure.memory import RamStats
from mcval.policy import Policy
from mcval.render.comment import MARKER, render_comment
from mcval.render.terminal import render_terminal
from mcval.results import record_path
from mcval.validate import Validator, validate_paths

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = "MCVAL_UPDATE_GOLDEN"
"""Set to 1 to rewrite the golden files instead of comparing with them."""

ENV = Environment(
    cpu_model="AMD EPYC 7B13",
    cpu_physical_cores=2,
    cpu_logical_cores=2,
    ram_total_mb=24000.0,
    gpu_name=None,
    torch_version="2.13.0",
    transformers_version="5.24.0",
    mcval_version="0.1.0",
    python_version="3.11.7",
    os="Linux",
    threads=2,
    environment_class="AMD EPYC 7B13 x2 | no GPU",
)

ROW = """\
schema: 1
team: {team}
model: {{id: org/tiny-bert, revision: 0123456789abcdef0123456789abcdef01234567,
        task: text-classification}}
method:
  name: {method}
{extra}evaluation:
  dataset: {{path: nyu-mll/glue, name: sst2, split: validation, samples: 64}}
reported:
  weights_mb: {weights}
  latency_cpu_ms: 3.1
  quality: {{accuracy: 0.5, macro_f1: 0.33}}
  hardware: {{cpu: {hw}}}
"""


def write_row(
    repo: Path,
    name: str,
    *,
    team: str = "alpha",
    method: str = "fp32",
    weights: float = 16.73,
    hw: str = "AMD EPYC 7B13",
    extra: str = "",
) -> Path:
    text = ROW.format(team=team, method=method, weights=weights, hw=hw, extra=extra)
    return write_submission(repo, team, name, textwrap.dedent(text))


def measurement(weights: float = 16.73, **details: Any) -> Measurement:
    return Measurement(
        submission="x",
        weights_mb=weights,
        latency_cpu_ms=3.0,
        ram_mb=120.0,
        quality={"accuracy": 0.5, "macro_f1": 0.3333},
        environment=ENV,
        ok=True,
        details=MeasurementDetails(threads=2, protocol={}, wall_s=1.0, **details),
    )


class FakeMeasure:
    """Stands in for the child process; counts calls so reuse can be asserted."""

    def __init__(self, result: Measurement) -> None:
        self.result = result
        self.calls: list[str] = []

    def __call__(self, loaded, repo_root, policy, devices, skip_quality):  # type: ignore[no-untyped-def]
        self.calls.append(loaded.id)
        return self.result.model_copy(update={"submission": loaded.id})


def validator(repo: Path, fake: FakeMeasure, **kwargs: Any) -> Validator:
    return Validator(
        repo,
        Policy(),
        repo / "results",
        ["cpu"],
        measure=fake,
        environment_class=ENV.environment_class,
        console=Console(file=open("/dev/null", "w")),
        **kwargs,
    )


def test_honest_submission_passes_and_is_stored(tmp_path: Path) -> None:
    write_row(tmp_path, "bert-fp32")
    fake = FakeMeasure(measurement())
    (report,) = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    assert report.status == "pass"
    assert fake.calls == ["alpha/bert-fp32"]
    stored = json.loads(record_path(tmp_path / "results", "alpha/bert-fp32").read_text())
    assert stored["verdict"] == "pass"
    assert stored["measured"]["weights_mb"] == 16.73
    assert stored["environment"]["summary"] == "AMD EPYC 7B13 · no GPU · torch 2.13.0 · 2 threads"
    assert exit_code([report]) == 0


def test_unchanged_submission_reuses_result(tmp_path: Path) -> None:
    write_row(tmp_path, "bert-fp32")
    fake = FakeMeasure(measurement())
    validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    (again,) = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    assert fake.calls == ["alpha/bert-fp32"]  # the second run measured nothing
    assert again.reused and again.status == "pass"
    # A changed reported number changes only the verdict: still no measurement.
    write_row(tmp_path, "bert-fp32", weights=30.0)
    (changed,) = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    assert fake.calls == ["alpha/bert-fp32"]
    assert changed.status == "fail"
    # A changed measurement input (the model revision) measures again; so does --force.
    path = tmp_path / "submissions/alpha/bert-fp32.yaml"
    path.write_text(path.read_text().replace("0123456789abcdef0123", "fedcba98765432100123"))
    validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    validate_paths([tmp_path / "submissions"], validator(tmp_path, fake, force=True))
    assert fake.calls == ["alpha/bert-fp32"] * 3


def test_wrong_size_fails_with_annotation_on_its_line(tmp_path: Path) -> None:
    write_row(tmp_path, "bert-int8", weights=16.73)
    fake = FakeMeasure(measurement(weights=4.41))
    (report,) = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    assert report.status == "fail"
    assert exit_code([report]) == 1
    # '%' is escaped as %25, as GitHub's workflow commands specify.
    assert annotations_for([report]) == [
        "::error file=submissions/alpha/bert-int8.yaml,line=10::Weight size (MB): reported "
        "16.73, measured 4.41 (+279.4 %25; outside ±1 %25 or ±0.01 MB)"
    ]


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    write_row(tmp_path, "good")
    bad = write_row(tmp_path, "bad")
    bad.write_text(bad.read_text().replace("  name: fp32", "  nmae: fp32"))
    fake = FakeMeasure(measurement())
    reports = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    assert [(r.id, r.status) for r in reports] == [("alpha/bad", "input"), ("alpha/good", "pass")]
    assert exit_code(reports) == 2
    assert [str(e) for e in reports[0].input_errors] == [
        "submissions/alpha/bad.yaml:6:3: missing required field 'method.name'",
        "submissions/alpha/bad.yaml:6:3: unknown field 'nmae' in method; did you mean 'name'?",
    ]


def test_child_error_gives_error_verdict(tmp_path: Path) -> None:
    from mcval.measure.measurement import MeasureError

    write_row(tmp_path, "hangs")
    broken = measurement().model_copy(
        update={
            "weights_mb": None,
            "latency_cpu_ms": None,
            "ram_mb": None,
            "quality": {},
            "ok": False,
        }
    )
    broken.details.errors.append(
        MeasureError(
            device="cpu",
            kind="timeout",
            message="cpu: the measurement was stopped after 30 s (time limit 30 s)",
        )
    )
    (report,) = validate_paths([tmp_path / "submissions"], validator(tmp_path, FakeMeasure(broken)))
    assert report.status == "error"
    assert report.record is not None
    assert report.record.report.errors == [
        "cpu: the measurement was stopped after 30 s (time limit 30 s)"
    ]
    assert exit_code([report]) == 1
    # An error may be transient (a timeout, an OOM): the next run measures again.
    fake = FakeMeasure(measurement())
    (again,) = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    assert fake.calls == ["alpha/hangs"] and again.status == "pass" and not again.reused


HOSTILE_METHOD = "INT8 | <script>alert(1)</script> @everyone `x` <!-- mcval:report -->"


def test_hostile_text_is_escaped_in_comment(tmp_path: Path) -> None:
    write_row(
        tmp_path,
        "evil",
        method=json.dumps(HOSTILE_METHOD),
        hw=json.dumps("Tesla T4\n| injected | row |"),
    )
    fake = FakeMeasure(measurement())
    reports = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    markdown = render_comment(reports)
    assert markdown.count(MARKER) == 1 and markdown.startswith(MARKER)
    assert "<script>" not in markdown and "@everyone" not in markdown
    # A pass is collapsed: its title is raw HTML (<summary>), escaped as HTML text.
    title = next(line for line in markdown.splitlines() if line.startswith("<details>"))
    assert title == (
        "<details><summary>✅ pass · alpha/evil — INT8 | &lt;script&gt;alert(1)&lt;/script&gt; "
        "@&#8203;everyone `x` &lt;!-- mcval:report --&gt; · org/tiny-bert</summary>"
    )


LOADED_AT_FP32 = RamStats(
    ram_mb=120.0,
    load_peak_mb=310.5,
    peak_rss_mb=480.0,
    baseline_rss_mb=360.0,
    final_rss_mb=470.0,
    method="vmhwm",
)
"""A recipe applied at load (fp32 copy, then cast): the load peak is kept apart from RAM."""


def test_comment_golden(tmp_path: Path) -> None:
    """The whole comment for three submissions, byte for byte against
    ``tests/golden/comment.md``.

    A missing or different golden file fails, so a fresh clone cannot pass by writing its
    own. After a deliberate change to the comment, rewrite it with
    ``MCVAL_UPDATE_GOLDEN=1 pytest tests/test_validate.py -k golden`` and review the diff.
    """
    write_row(tmp_path, "bert-fp32")
    write_row(
        tmp_path,
        "bert-int8",
        method="INT8 dynamic",
        weights=16.73,
        hw="Intel i7-12700H",
        extra="  baseline: alpha/bert-fp32\n",
    )
    bad = write_row(tmp_path, "broken", team="beta")
    bad.write_text(bad.read_text().replace("task: text-classification", "task: text-clasification"))
    fake = FakeMeasure(measurement(ram=LOADED_AT_FP32))
    reports = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    markdown = render_comment(reports)
    for report in reports:
        if report.record is not None:  # the dates of this run are not part of the golden file
            stamp = report.record.measured_at.strftime("%Y-%m-%d %H:%M UTC")
            markdown = markdown.replace(stamp, "2026-11-28 09:00 UTC")
    golden = GOLDEN / "comment.md"
    if os.environ.get(UPDATE_GOLDEN) == "1":  # explicit only; then reviewed by eye
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(markdown, encoding="utf-8")
    assert golden.is_file(), f"{golden} is missing: write it with {UPDATE_GOLDEN}=1, review it"
    assert markdown == golden.read_text(encoding="utf-8")


def test_terminal_report(tmp_path: Path) -> None:
    write_row(tmp_path, "bert-int8", weights=30.0)
    reports = validate_paths(
        [tmp_path / "submissions"], validator(tmp_path, FakeMeasure(measurement()))
    )
    console = Console(record=True, width=120, color_system=None)
    render_terminal(reports, console)
    text = console.export_text()
    assert "FAIL alpha/bert-int8  submissions/alpha/bert-int8.yaml" in text
    assert "Weight size (MB)" in text and "+79.3 %" in text and "outside ±1 % or ±0.01 MB" in text
    assert text.rstrip().endswith("0 of 1 submission(s) pass")


def test_cuda_request_without_gpu_is_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcval.errors import InputError
    from mcval.measure.devices import require_devices as resolve_devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(InputError, match="--device cuda: no CUDA GPU"):
        resolve_devices("cuda")
    assert resolve_devices("all") == ["cpu"]


STARVED = "other load starved this process (CPU use 31 % of 2 threads)"


def starved(weights: float = 16.73) -> Measurement:
    """A busy machine: CPU latency 10× the quiet figure, marked unstable by the runner."""
    return measurement(weights, ram=LOADED_AT_FP32).model_copy(
        update={"latency_cpu_ms": 30.0, "unstable": {"latency_cpu_ms": STARVED}}
    )


def test_unstable_figure_is_a_rerun_stored_and_measured_again(tmp_path: Path) -> None:
    write_row(tmp_path, "bert-fp32")  # reports 3.1 ms on the runner's own CPU
    fake = FakeMeasure(starved())
    (report,) = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    assert report.status == "unmeasured"
    assert exit_code([report]) == 3
    stored = json.loads(record_path(tmp_path / "results", "alpha/bert-fp32").read_text())
    assert stored["verdict"] == "unmeasured"
    assert stored["measured"]["latency_cpu_ms"] == 30.0  # shown, never judged
    assert stored["measured"]["unstable"] == {"latency_cpu_ms": STARVED}
    assert stored["measurement"]["unstable"] == {"latency_cpu_ms": STARVED}
    assert stored["measured"]["load_peak_mb"] == {"ram_mb": 310.5}
    assert stored["report"]["metrics"][1]["status"] == "unstable"
    assert annotations_for([report]) == [
        "::warning file=submissions/alpha/bert-fp32.yaml,line=11::CPU latency (ms): measured "
        "30.0, could not measure stably: other load starved this process (CPU use 31 %25 of 2 "
        "threads); re-run"
    ]
    # Re-running means measuring again, never reusing the disturbed figure.
    fake.result = measurement()
    (again,) = validate_paths([tmp_path / "submissions"], validator(tmp_path, fake))
    assert fake.calls == ["alpha/bert-fp32"] * 2
    assert (again.reused, again.status, exit_code([again])) == (False, "pass", 0)


def test_exit_code_a_stable_failure_outranks_a_rerun(tmp_path: Path) -> None:
    write_row(tmp_path, "slow")
    write_row(tmp_path, "wrong", weights=30.0)  # the size fails whatever the latency
    reports = validate_paths(
        [tmp_path / "submissions"], validator(tmp_path, FakeMeasure(starved()))
    )
    assert [(r.id, r.status) for r in reports] == [
        ("alpha/slow", "unmeasured"),
        ("alpha/wrong", "fail"),
    ]
    assert exit_code(reports) == 1
    assert exit_code(reports[:1]) == 3
    bad = write_row(tmp_path, "bad")
    bad.write_text(bad.read_text().replace("  name: fp32", "  nmae: fp32"))
    reports = validate_paths(
        [tmp_path / "submissions"], validator(tmp_path, FakeMeasure(starved()))
    )
    assert [r.status for r in reports] == ["input", "unmeasured", "fail"]
    assert exit_code(reports) == 2


def test_comment_and_terminal_mark_unstable_figures(tmp_path: Path) -> None:
    write_row(tmp_path, "bert-fp32")
    reports = validate_paths(
        [tmp_path / "submissions"], validator(tmp_path, FakeMeasure(starved()))
    )
    lines = render_comment(reports).splitlines()
    assert "1 submission(s): 1 re-run." in lines
    assert "| alpha/bert-fp32 | 🔁 re-run |" in lines
    assert "### 🔁 re-run · alpha/bert-fp32 — fp32 · org/tiny-bert" in lines
    assert (
        "**Could not measure stably; re-run.** The figures marked unstable were disturbed while "
        "the runner measured them (the reason is in their row), so they neither pass nor fail "
        "this submission. That is the runner's problem, not the submission's: run the check "
        "again."
    ) in lines
    assert (
        "| CPU latency (ms) | 3.10 | 30.00 | -89.7 % |  | ⚠️ unstable — could not measure "
        "stably: other load starved this process (CPU use 31 % of 2 threads); re-run |"
    ) in lines
    assert (
        "Peak while loading/compressing: RAM 310.50 MB — not counted in the RAM/VRAM figures, "
        "which are the peaks while the prepared model runs inference"
    ) in lines

    console = Console(record=True, width=250, color_system=None)
    render_terminal(reports, console)
    text = console.export_text()
    assert "RE-RUN alpha/bert-fp32  submissions/alpha/bert-fp32.yaml" in text
    assert "  Could not measure stably; re-run. The figures marked unstable were disturbed" in text
    assert (
        "⚠ unstable could not measure stably: other load starved this process (CPU use 31 % of "
        "2 threads); re-run"
    ) in text
    assert "  Peak while loading/compressing: RAM 310.50 MB — not counted in the RAM/VRAM" in text
    assert text.rstrip().endswith(
        "0 of 1 submission(s) pass; 1 could not be measured stably (re-run)"
    )

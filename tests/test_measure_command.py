"""``mcval measure``: JSON contract, readable table, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_models import LOAD_TOLERANT_TOML, build_tiny_bert_classifier, write_submission

from mcval.cli import main
from mcval.commands import measure as command
from mcval.measure import devices
from mcval.measure.measurement import Measurement

SUBMISSION = """\
schema: 1
team: testers
model:
  id: models/tiny-bert
  task: text-classification
method:
  name: FP32
evaluation:
  dataset: {path: json, data_files: [data/eval.jsonl]}
benchmark:
  input: {tokens: 16}
"""
POLICY = f"""\
[measure]
warmup_calls = 1
min_calls = 3
min_seconds = 0.1
threads = 1
{LOAD_TOLERANT_TOML}"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cmdrepo")
    (root / ".git").mkdir()
    (root / "mcval.toml").write_text(POLICY, encoding="utf-8")
    build_tiny_bert_classifier(root / "models" / "tiny-bert", labels=("negative", "positive"))
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text(
        '{"text": "hello world", "label": "positive"}\n', encoding="utf-8"
    )
    write_submission(root, "testers", "fp32", SUBMISSION)
    return root


def args(path: Path, **kw: Any) -> dict[str, Any]:
    """``command.measure``'s arguments: the file and the options given."""
    return {"path": path, **kw}


@pytest.fixture(scope="module")
def json_run(repo: Path) -> tuple[int, str, str]:
    capture = pytest.MonkeyPatch()
    import io
    import sys

    out, err = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", out)
    capture.setattr(sys, "stderr", err)
    try:
        code = command.measure(
            **args(
                repo / "submissions/testers/fp32.yaml",
                as_json=True,
                skip_quality=True,
                device="cpu",
            )
        )
    finally:
        capture.undo()
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_json_output_contract(json_run: tuple[int, str, str]) -> None:
    code, out, err = json_run
    data = json.loads(out)  # exactly one JSON object on stdout
    assert code == 0 and data["unstable"] == {}, (err, data["unstable"])
    for key in (
        "weights_mb",
        "latency_cpu_ms",
        "latency_gpu_ms",
        "ram_mb",
        "vram_mb",
        "quality",
        "unstable",
        "environment",
        "details",
    ):
        assert key in data
    assert data["latency_gpu_ms"] is None and data["vram_mb"] is None
    assert data["quality"] == {}
    assert data["submission"] == "testers/fp32"
    assert data["details"]["protocol"]["min_calls"] == 3  # mcval.toml was read
    assert data["details"]["latency"]["cpu"]["count"] >= 3
    assert "[cpu] loading model" in err and "[cpu] timing" in err  # progress on stderr


@pytest.mark.slow
def test_readable_table(json_run: tuple[int, str, str]) -> None:
    from rich.console import Console

    m = Measurement.model_validate_json(json_run[1])
    console = Console(record=True, width=160)
    command.render(m, console)
    text = console.export_text()
    assert "mcval measure: testers/fp32" in text
    assert f"{m.weights_mb:,.2f}" in text
    assert f"{m.latency_cpu_ms:,.2f}" in text
    assert "latency_gpu_ms" in text and "vram_mb" in text
    assert "environment: " in text


def test_cuda_without_gpu_is_a_usage_error(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    code = main(["measure", str(repo / "submissions/testers/fp32.yaml"), "--device", "cuda"])
    assert code == 2
    assert capsys.readouterr().err == (
        "error: --device cuda: no CUDA GPU is available on this machine "
        "(torch.cuda.is_available() is False); measure with --device cpu\n"
    )


def test_invalid_submission_is_an_input_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_submission(
        repo, "testers", "bad", SUBMISSION.replace("team: testers", "team: testers\nteem: x")
    )
    code = main(["measure", str(bad), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: submissions/testers/bad.yaml:3:1: unknown field 'teem'")


def test_devices_for_all_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    assert devices.resolve_devices("all") == (["cpu"], None)
    assert devices.resolve_devices("cpu") == (["cpu"], None)
    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    assert devices.resolve_devices("all") == (["cpu", "cuda"], None)
    assert devices.resolve_devices("cuda") == (["cuda"], None)


def test_hidden_cuda_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.cuda_available() is False


STARVED = "other load starved this process (CPU use 31 % of 2 threads)"


def starved_measurement() -> Measurement:
    """What a student's busy laptop gives for a bf16 row: CPU latency marked unstable, RAM
    during inference below the fp32 copy the cast made while loading."""
    from mcval.measure.latency import LatencyStats
    from mcval.measure.measurement import MeasurementDetails
    from mcval.measure.memory import RamStats

    latency = LatencyStats(
        median_ms=1103.95,
        p10_ms=1020.0,
        p90_ms=1250.0,
        mean_ms=1110.0,
        min_ms=990.0,
        max_ms=1300.0,
        cv=0.08,
        count=12,
        total_s=13.3,
        first_call_ms=1500.0,
        warmup_calls=2,
        threads=2,
        device="cpu",
        stopped_by="max_seconds",
        timer="perf_counter",
        cpu_time_s=8.2,
        cpu_utilization=0.31,
        load_before=2.1,
        load_after=2.3,
        attempts=3,
        unstable=True,
        unstable_reason=STARVED,
    )
    ram = RamStats(
        ram_mb=270.0,
        load_peak_mb=784.0,
        peak_rss_mb=1030.0,
        baseline_rss_mb=760.0,
        final_rss_mb=1000.0,
        method="vmhwm",
    )
    return Measurement(
        submission="testers/fp32",
        weights_mb=256.0,
        latency_cpu_ms=1103.95,
        ram_mb=270.0,
        unstable={"latency_cpu_ms": STARVED},
        ok=True,
        details=MeasurementDetails(
            latency={"cpu": latency}, ram=ram, threads=2, protocol={}, wall_s=20.0
        ),
    )


def test_unstable_figure_is_printed_with_its_warning() -> None:
    from rich.console import Console

    console = Console(record=True, width=250, color_system=None)
    command.render(starved_measurement(), console)
    lines = console.export_text().splitlines()
    row = next(line for line in lines if "latency_cpu_ms" in line)
    assert "1,103.95 ⚠" in row
    assert (
        "unstable: other load starved this process (CPU use 31 % of 2 threads); close other "
        "programs and re-run before writing it down"
    ) in row
    assert any(
        "median of 12 calls; p10 1020.00 / p90 1250.00; cv 8.0%; 2 threads; first call "
        "1500.0 ms; CPU use 31 % of 2 threads; 3 timed windows" in line
        for line in lines
    )
    ram = next(line for line in lines if "ram_mb" in line)
    assert "270.00 " in ram and "⚠" not in ram  # a stable figure: no warning
    assert (
        "peak RSS during inference 1,030.0 MB - before load 760.0 MB (vmhwm); peak while "
        "loading/compressing 784.0 MB, not counted in ram_mb"
    ) in ram


def test_unstable_measurement_exits_3_with_the_map_in_json(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcval.measure import measurement as runner

    monkeypatch.setattr(runner, "measure_submission", lambda *a, **k: starved_measurement())
    code = command.measure(
        **args(repo / "submissions/testers/fp32.yaml", as_json=True, device="cpu")
    )
    assert code == 3
    data = json.loads(capsys.readouterr().out)
    assert data["unstable"] == {"latency_cpu_ms": STARVED}
    assert data["latency_cpu_ms"] == 1103.95  # still filled in: shown, with its warning
    quiet = starved_measurement().model_copy(update={"unstable": {}})
    monkeypatch.setattr(runner, "measure_submission", lambda *a, **k: quiet)
    fp32 = repo / "submissions/testers/fp32.yaml"
    assert command.measure(**args(fp32, as_json=True, device="cpu")) == 0

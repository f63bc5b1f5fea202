"""Issue 15, item 10: a GPU job's caches and pip configuration are its own."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from mcval.ci.hygiene import cache_problems

ROOT = Path(__file__).resolve().parents[1]


def per_job(temp: Path) -> dict[str, str]:
    return {
        "RUNNER_TEMP": str(temp),
        "HF_HOME": str(temp / "hf-home"),
        "PIP_CACHE_DIR": str(temp / "pip-cache"),
        "PIP_CONFIG_FILE": os.devnull,
        "PYTHONNOUSERSITE": "1",
    }


def test_per_job_caches_pass(tmp_path: Path) -> None:
    assert cache_problems(per_job(tmp_path)) == []


def test_shared_caches_and_inherited_config_are_named(tmp_path: Path) -> None:
    env = per_job(tmp_path / "job")
    env["HF_HOME"] = "/home/runner/.cache/huggingface"
    env["PIP_CACHE_DIR"] = str(tmp_path / "job/../elsewhere")  # escapes through '..'
    del env["PIP_CONFIG_FILE"]
    env["PYTHONNOUSERSITE"] = "0"
    assert cache_problems(env) == [
        f"HF_HOME=/home/runner/.cache/huggingface is outside this job's RUNNER_TEMP "
        f"({tmp_path / 'job'})",
        f"PIP_CACHE_DIR={tmp_path / 'job/../elsewhere'} is outside this job's RUNNER_TEMP "
        f"({tmp_path / 'job'})",
        "PIP_CONFIG_FILE is not /dev/null: a pip.conf a model wrote could redirect the next "
        "job's installs",
        "PYTHONNOUSERSITE is not 1: user site-packages would be imported",
    ]
    assert cache_problems({"MCVAL_EPHEMERAL_RUNNER": "true"}) == []


def test_the_workflows_gpu_jobs_pass_the_check(tmp_path: Path) -> None:
    """The env the workflows set, with ${{ runner.temp }} as the runner expands it."""
    for name in ("measure.yml", "publish.yml"):
        job = yaml.safe_load((ROOT / ".github/workflows" / name).read_text())["jobs"]["measure"]
        env = {
            k: str(v).replace("${{ runner.temp }}", str(tmp_path)) for k, v in job["env"].items()
        }
        assert cache_problems({"RUNNER_TEMP": str(tmp_path), **env}) == [], name

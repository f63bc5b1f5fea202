"""Issue 13: a hub the runner cannot reach is the runner's fault, never the submission's.

``mcval validate`` used to report such a submission as "⛔ invalid" with exit 2 ("validate
rejected the file"). Now: exit 3, a sentence naming the runner, nothing stored. The two
cases are told apart honestly: a hub that *answers* that the repo does not exist is the
student's error (exit 2); a network failure, or offline mode with no cached copy, is the
runner's (exit 3). The hub is faked on 127.0.0.1 (a closed port, a server answering 404),
so nothing here touches the network.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_validate import ENV, FakeMeasure, measurement, validator, write_row
from tiny_models import write_submission

from mcval.cli import main
from mcval.commands.validate import annotations_for, exit_code
from mcval.errors import InputError, RunnerError
from mcval.measure.measurement import MeasureError, Measurement, MeasurementDetails
from mcval.models import HubUnavailableError, HuggingFaceHub, ModelNotFoundError
from mcval.render.comment import render_comment
from mcval.results import record_path
from mcval.validate import validate_paths

RUNNER = "the runner could not reach the Hugging Face Hub"
NOT_THEIRS = "this is not a problem of the submission; re-run"
SHA = "0123456789abcdef0123456789abcdef01234567"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """huggingface_hub in online mode for this test (the suite runs with HF_HUB_OFFLINE=1,
    which it reads once at import); each test points ``constants.ENDPOINT`` at 127.0.0.1."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield


class _NoSuchRepo(http.server.BaseHTTPRequestHandler):
    """What the hub answers for a repo that does not exist."""

    def do_GET(self) -> None:
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test's output is the assertions."""


@pytest.fixture
def hub_without_the_repo() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoSuchRepo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- where the error is classified: mcval.models.sources -------------------------------------


def test_a_refused_connection_is_the_runners_error(
    online: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(HubUnavailableError) as info:
        HuggingFaceHub(cache_dir=tmp_path, timeout_s=5).listing("org/remote-model", SHA)
    error = info.value
    assert isinstance(error, RunnerError) and not isinstance(error, InputError)
    assert str(error).startswith(f"{RUNNER} (listing the files of 'org/remote-model' failed (")
    assert str(error).endswith(NOT_THEIRS)


def test_offline_mode_without_a_cached_copy_is_the_runners_error(tmp_path: Path) -> None:
    with pytest.raises(HubUnavailableError) as info:  # the suite runs with HF_HUB_OFFLINE=1
        HuggingFaceHub(cache_dir=tmp_path).listing("org/remote-model", SHA)
    assert isinstance(info.value, RunnerError) and not isinstance(info.value, InputError)
    assert str(info.value).startswith(f"{RUNNER} (cannot list the files of hub model ")


def test_a_repo_the_hub_says_does_not_exist_is_the_students_error(
    online: None, monkeypatch: pytest.MonkeyPatch, hub_without_the_repo: str, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub_without_the_repo)
    with pytest.raises(ModelNotFoundError) as info:
        HuggingFaceHub(cache_dir=tmp_path, timeout_s=5).listing("org/no-such-model", SHA)
    assert isinstance(info.value, InputError) and not isinstance(info.value, RunnerError)
    assert "hub model 'org/no-such-model' does not exist or is private" in info.value.message


# -- the pipeline and the command: exit 3, no verdict, nothing stored --------------------------


def unreachable() -> Measurement:
    """What the measuring child reports when the hub refused the connection."""
    sentence = str(
        HubUnavailableError(
            "listing the files of 'org/tiny-bert' failed (ConnectError: [Errno 111] "
            "Connection refused); check the network"
        )
    )
    error = MeasureError(device="cpu", kind="runner", message=sentence, elapsed_s=2.0)
    details = MeasurementDetails(threads=2, protocol={}, wall_s=2.0, errors=[error])
    return Measurement(submission="x", environment=ENV, ok=False, details=details)


def test_validate_reports_the_runner_not_the_submission(tmp_path: Path) -> None:
    write_row(tmp_path, "bert-fp32")
    stored = record_path(tmp_path / "results", "alpha/bert-fp32")
    validate_paths([tmp_path / "submissions"], validator(tmp_path, FakeMeasure(measurement())))
    before = stored.read_bytes()  # a previous passing result

    reports = validate_paths(
        [tmp_path / "submissions"], validator(tmp_path, FakeMeasure(unreachable()), force=True)
    )
    (report,) = reports
    assert report.status == "unusable" and report.record is None and not report.input_errors
    assert report.problem is not None
    assert report.problem.startswith(RUNNER) and report.problem.endswith(NOT_THEIRS)
    assert exit_code(reports) == 3
    assert stored.read_bytes() == before  # nothing stored: the old result stays as it was
    markdown = render_comment(reports)
    assert "⚠️ **could not be measured**: " + RUNNER in markdown
    assert "invalid" not in markdown and "rejected" not in markdown
    assert "1 submission(s): 1 could not be measured." in markdown
    (line,) = annotations_for(reports)
    assert line.startswith("::warning file=submissions/alpha/bert-fp32.yaml::" + RUNNER)


def test_a_failing_submission_still_decides_the_exit_code(tmp_path: Path) -> None:
    write_row(tmp_path, "bert-fp32")
    write_row(tmp_path, "bert-int8", weights=30.0)  # measured 16.73: fails its size
    fake = FakeMeasure(measurement())
    down = FakeMeasure(unreachable())
    reports = [
        *validate_paths([tmp_path / "submissions/alpha/bert-int8.yaml"], validator(tmp_path, fake)),
        *validate_paths([tmp_path / "submissions/alpha/bert-fp32.yaml"], validator(tmp_path, down)),
    ]
    assert [r.status for r in reports] == ["fail", "unusable"]
    assert exit_code(reports) == 1


def _hub_repo(root: Path) -> Path:
    """A repository whose one submission names a hub model that is in no cache."""
    (root / ".git").mkdir(parents=True)
    (root / "mcval.toml").write_text("[measure]\ntime_limit_s = 240\n", encoding="utf-8")
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text('{"text": "a b", "label": "x"}\n')
    doc = {
        "schema": 1,
        "team": "alpha",
        "model": {
            "id": "mcval-tests/not-in-any-cache",
            "revision": SHA,
            "task": "text-classification",
        },
        "method": {"name": "fp32"},
        "evaluation": {"dataset": {"path": "json", "data_files": ["data/eval.jsonl"]}},
        "benchmark": {"input": {"tokens": 16}},
        "reported": {"weights_mb": 1.0},
    }
    return write_submission(root, "alpha", "remote", json.dumps(doc))  # JSON is YAML


@pytest.mark.slow
def test_mcval_validate_and_measure_exit_3_offline_with_nothing_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real measuring child, offline (HF_HUB_OFFLINE=1, as the suite runs): the model is
    in no cache, so the runner cannot get it. That is exit 3 and the runner's sentence."""
    sub = _hub_repo(tmp_path / "repo")
    root = sub.parents[2]
    monkeypatch.chdir(root)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    comment = tmp_path / "comment.md"
    code = main(["validate", "submissions", "--device", "cpu", "--markdown", str(comment)])
    out, err = capsys.readouterr()
    assert code == 3, out + err
    assert "UNMEASURED alpha/remote  submissions/alpha/remote.yaml" in out
    (line,) = [line for line in out.splitlines() if RUNNER in line]
    assert re.fullmatch(
        rf"  {RUNNER} \(cannot list the files of hub model 'mcval-tests/not-in-any-cache': "
        rf"offline mode is on .*\); {NOT_THEIRS}",
        line,
    ), line
    assert "INVALID" not in out and "rejected" not in comment.read_text(encoding="utf-8")
    assert not (root / "results").exists()

    code = main(["measure", str(sub), "--device", "cpu", "--skip-quality"])
    out, err = capsys.readouterr()
    assert code == 3, out + err
    assert RUNNER in " ".join(out.split())

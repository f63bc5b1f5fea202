"""The submission contract: every rule with a real bad file, exact line and message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mcval.errors import InputError, InputErrors
from mcval.policy import Policy
from mcval.submission import load_submission
from mcval.submission.check import check_paths
from mcval.tasks.base import benchmark_input

VALID = """\
schema: 1
team: ml_masters
model:
  id: openai/whisper-small
  revision: 973afd24965f72e36ca33b3055d56a652f456b46
  task: automatic-speech-recognition
method:
  name: Whisper
evaluation:
  dataset: {path: openslr/librispeech_asr, name: clean, split: test, samples: 200, seed: 0}
  metrics: [cer, wer]
benchmark:
  batch_size: 1
  input: {seconds: 30}
reported:
  weights_mb: 922.15
  latency_cpu_ms: 377.65
  quality: {cer: 0.0134, wer: 0.0383}
  hardware: {cpu: Intel i7-12700H}
"""


def write(repo: Path, text: str, rel: str = "submissions/ml_masters/whisper.yaml") -> Path:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(
    repo: Path,
    text: str | None = None,
    rel: str = "submissions/ml_masters/whisper.yaml",
    policy: Policy | None = None,
) -> list[str]:
    path = write(repo, text, rel) if text is not None else repo / rel
    with pytest.raises((InputError, InputErrors)) as info:
        load_submission(path, repo, policy)
    exc = info.value
    return [str(e) for e in exc.errors] if isinstance(exc, InputErrors) else [str(exc)]


def test_valid_submission_fills_task_defaults(tmp_path: Path) -> None:
    text = VALID.replace("  metrics: [cer, wer]\n", "").replace(
        "benchmark:\n  batch_size: 1\n  input: {seconds: 30}\n", ""
    )
    loaded = load_submission(write(tmp_path, text), tmp_path)
    assert loaded.id == "ml_masters/whisper"
    assert loaded.relpath == "submissions/ml_masters/whisper.yaml"
    assert loaded.submission.evaluation.metrics == ["cer", "wer"]
    # Left out, the input stays unset: the runner takes the task's default, shortened to the
    # model's maximum length when that is shorter (tests/test_tasks_classification.py).
    assert loaded.submission.benchmark.input is None
    assert benchmark_input("automatic-speech-recognition", loaded.submission.benchmark) == {
        "seconds": 30
    }
    assert loaded.submission.reported.weights_mb == 922.15
    assert loaded.line_of("reported", "weights_mb") == 12  # four lines fewer than VALID
    assert loaded.warnings == []


def test_unknown_key_gets_did_you_mean_at_its_line(tmp_path: Path) -> None:
    text = VALID.replace("  revision: 973a", "  revison: 973a")
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:5:3: unknown field 'revison' in model; "
        "did you mean 'revision'?"
    ]


def test_unknown_top_level_key_lists_known_fields(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, VALID + "extra_stuff: 1\n")
    assert errors == [
        "submissions/ml_masters/whisper.yaml:20:1: unknown field 'extra_stuff' in the top level; "
        "known fields: schema, team, model, method, evaluation, benchmark, reported"
    ]


def test_missing_required_field(tmp_path: Path) -> None:
    text = VALID.replace("  task: automatic-speech-recognition\n", "")
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:4:3: missing required field 'model.task'"
    ]


def test_wrong_type_is_explained(tmp_path: Path) -> None:
    text = VALID.replace("  batch_size: 1\n", '  batch_size: "8"\n')
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:13:15: benchmark.batch_size: expected a whole "
        "number, got text"
    ]


def test_number_where_text_expected_suggests_quotes(tmp_path: Path) -> None:
    text = VALID.replace("  name: Whisper\n", "  name: 8\n")
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:8:9: method.name: expected text, got a number "
        "(put it in quotes)"
    ]


def test_task_typo(tmp_path: Path) -> None:
    text = VALID.replace("task: automatic-speech-recognition", "task: automatic-speech-recogniton")
    (error,) = errors_of(tmp_path, text)
    assert error.startswith(
        "submissions/ml_masters/whisper.yaml:6:9: model.task: 'automatic-speech-recogniton' is "
        "not one of "
    )
    assert error.endswith("did you mean 'automatic-speech-recognition'?")


def test_duplicate_key_names_first_line(tmp_path: Path) -> None:
    assert errors_of(tmp_path, VALID + "team: other\n") == [
        "submissions/ml_masters/whisper.yaml:20:1: duplicate key 'team' (first defined on "
        "line 2); keep only one of them"
    ]


def test_anchors_and_aliases_refused(tmp_path: Path) -> None:
    text = VALID.replace("  name: Whisper\n", "  name: &n Whisper\n  notes: *n\n")
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:8:9: anchors and aliases (&name / *name) are not "
        "allowed in a submission; write each value out in full"
    ]


def test_billion_laughs_refused_before_expansion(tmp_path: Path) -> None:
    bomb = 'a: &a ["lol","lol"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b]\n'
    (error,) = errors_of(tmp_path, bomb)
    assert error.startswith("submissions/ml_masters/whisper.yaml:1:4: anchors and aliases")


def test_python_tag_refused_and_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = VALID.replace(
        "  name: Whisper\n",
        f"  name: !!python/object/apply:os.system ['touch {marker}']\n",
    )
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:8:9: tag !!python/object/apply:os.system is not "
        "allowed: a submission holds plain data (text, numbers, true/false, lists, mappings) only"
    ]
    assert not marker.exists()


def test_deep_nesting_refused(tmp_path: Path) -> None:
    text = "team: " + "[" * 40 + "]" * 40 + "\n"
    (error,) = errors_of(tmp_path, text)
    assert "nesting deeper than 20 levels" in error
    assert error.startswith("submissions/ml_masters/whisper.yaml:1:")


def test_size_cap(tmp_path: Path) -> None:
    text = VALID + "# " + "x" * 70_000 + "\n"
    path = write(tmp_path, text)
    size = path.stat().st_size
    assert errors_of(tmp_path, None) == [
        f"submissions/ml_masters/whisper.yaml: file is {size:,} bytes, over the 65,536-byte "
        "limit for a submission; a submission is a short text file"
    ]


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "submissions/ml_masters/whisper.yaml"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"schema: 1\nteam: caf\xe9\n")
    assert errors_of(tmp_path, None) == [
        "submissions/ml_masters/whisper.yaml:2:10: not UTF-8 text (byte 0xe9); save the file "
        "as UTF-8"
    ]


def test_invalid_yaml_syntax(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, "schema: 1\nteam: [unclosed\n")
    assert error.startswith("submissions/ml_masters/whisper.yaml:3:1: invalid YAML:")


def test_units_are_converted_and_shown(tmp_path: Path) -> None:
    text = (
        VALID.replace("weights_mb: 922.15", 'weights_mb: "1.33 GB"')
        .replace("latency_cpu_ms: 377.65", "latency_cpu_ms: 0.43 s")
        .replace("cer: 0.0134", 'cer: "1.34%"')
    )
    loaded = load_submission(write(tmp_path, text), tmp_path)
    assert loaded.submission.reported.weights_mb == pytest.approx(1361.92)
    assert loaded.submission.reported.latency_cpu_ms == pytest.approx(430.0)
    assert loaded.submission.reported.quality["cer"] == pytest.approx(0.0134)
    assert [c.describe() for c in loaded.conversions] == [
        "reported.weights_mb: '1.33 GB' read as 1361.92 MiB (2^30 bytes a GB; a decimal GB is "
        "written '1.33 GB (10^9)')",
        "reported.latency_cpu_ms: '0.43 s' read as 430 ms",
        "reported.quality.cer: '1.34%' read as 0.0134",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"12 ms"', "'12 ms' has a unit of the wrong kind; expected a size"),
        ('"12 parsecs"', "'12 parsecs': unknown unit 'parsecs'"),
        ('"1,5 GB"', "'1,5 GB': use a dot as the decimal separator"),
        (".nan", "expected a finite number, got nan"),
        ("-5", "weights_mb: Input should be greater than or equal to 0"),
    ],
)
def test_bad_reported_sizes(tmp_path: Path, value: str, message: str) -> None:
    text = VALID.replace("weights_mb: 922.15", f"weights_mb: {value}")
    (error,) = errors_of(tmp_path, text)
    assert error.startswith("submissions/ml_masters/whisper.yaml:16:15: ")
    assert message in error


def test_team_must_match_directory(tmp_path: Path) -> None:
    text = VALID.replace("team: ml_masters", "team: other_team")
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:2:7: team 'other_team' does not match the directory "
        "'ml_masters'; a team's files live in submissions/other_team/"
    ]


def test_file_outside_submissions_tree(tmp_path: Path) -> None:
    assert errors_of(tmp_path, VALID, rel="elsewhere/whisper.yaml") == [
        "elsewhere/whisper.yaml: a submission lives at submissions/<team>/<name>.yaml; "
        "move the file there"
    ]


def test_symlinked_submission_refused(tmp_path: Path) -> None:
    target = write(tmp_path, VALID, rel="real/whisper.yaml")
    link = tmp_path / "submissions/ml_masters/whisper.yaml"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    with pytest.raises(InputError, match="not a symbolic link"):
        load_submission(link, tmp_path)


def test_quality_percent_written_as_fraction_metric(tmp_path: Path) -> None:
    text = VALID.replace("wer: 0.0383", "wer: 3.83")
    # WER may exceed 1 (insertions), so 3.83 is legal; accuracy may not.
    load_submission(write(tmp_path, text), tmp_path)
    text = VALID.replace("task: automatic-speech-recognition", "task: text-classification")
    text = (
        text.replace("metrics: [cer, wer]", "metrics: [accuracy]")
        .replace("quality: {cer: 0.0134, wer: 0.0383}", "quality: {accuracy: 83.5}")
        .replace("input: {seconds: 30}", "input: {tokens: 128}")
    )
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:18:23: accuracy = 83.5 is out of range; it is a "
        'fraction: write 0.835 or "83.5%"'
    ]


def test_metric_not_computed_for_task(tmp_path: Path) -> None:
    text = VALID.replace("metrics: [cer, wer]", "metrics: [cer, bleu]").replace(
        "quality: {cer: 0.0134, wer: 0.0383}", "quality: {cer: 0.0134, wre: 0.0383}"
    )
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:11:18: metric 'bleu' is not computed for "
        "automatic-speech-recognition; choose from wer, cer",
        "submissions/ml_masters/whisper.yaml:18:26: quality metric 'wre' is not computed for "
        "automatic-speech-recognition; did you mean 'wer'?",
    ]


def test_benchmark_input_must_fit_task(tmp_path: Path) -> None:
    text = VALID.replace("input: {seconds: 30}", "input: {tokens: 128}")
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:14:10: benchmark input {tokens: ...} does not fit "
        "automatic-speech-recognition; use {seconds: ...}"
    ]


def test_benchmark_input_needs_one_shape(tmp_path: Path) -> None:
    text = VALID.replace("input: {seconds: 30}", "input: {seconds: 30, tokens: 5}")
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:14:10: benchmark.input: use exactly one input shape: "
        "{tokens: N}, {prompt_tokens: N, new_tokens: M}, {seconds: S} or {image_size: N}"
    ]


def test_model_id_cannot_escape_repository(tmp_path: Path) -> None:
    text = VALID.replace("id: openai/whisper-small", "id: ../../etc")
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:4:7: model.id: must be a hub id or a path inside "
        "the repository (no '..', '/', '~')"
    ]


def test_data_files_cannot_escape_repository(tmp_path: Path) -> None:
    text = VALID.replace(
        "  dataset: {path: openslr/librispeech_asr, name: clean, split: test, samples: 200, "
        "seed: 0}",
        "  dataset: {path: json, data_files: [../secret.json]}",
    )
    assert errors_of(tmp_path, text) == [
        "submissions/ml_masters/whisper.yaml:10:38: data file '../secret.json' must be a path "
        "inside the repository (no '..')"
    ]


def test_unpinned_revision_is_a_warning(tmp_path: Path) -> None:
    text = VALID.replace("  revision: 973afd24965f72e36ca33b3055d56a652f456b46\n", "")
    loaded = load_submission(write(tmp_path, text), tmp_path)
    assert [str(w) for w in loaded.warnings] == [
        "submissions/ml_masters/whisper.yaml:4:3: model.revision is not pinned to a 40-character "
        "commit sha; the hub repo can change under the result"
    ]


def test_policy_restricts_tasks_and_datasets(tmp_path: Path) -> None:
    policy = Policy(
        allowed_tasks=["causal-lm"],
        allowed_datasets={"automatic-speech-recognition": ["openslr/librispeech_asr_dummy"]},
    )
    assert errors_of(tmp_path, VALID, policy=policy) == [
        "submissions/ml_masters/whisper.yaml:6:9: task 'automatic-speech-recognition' is not "
        "allowed in this course",
        "submissions/ml_masters/whisper.yaml:10:19: dataset 'openslr/librispeech_asr' is not "
        "allowed for automatic-speech-recognition; use one of: openslr/librispeech_asr_dummy",
    ]


def _baseline_pair(repo: Path, baseline: str = "ml_masters/whisper-fp32") -> Path:
    write(repo, VALID, rel="submissions/ml_masters/whisper-fp32.yaml")
    text = VALID.replace("  name: Whisper\n", f"  name: INT8\n  baseline: {baseline}\n")
    return write(repo, text, rel="submissions/ml_masters/whisper-int8.yaml")


def test_cross_file_baseline_exists(tmp_path: Path) -> None:
    _baseline_pair(tmp_path)
    report = check_paths([tmp_path / "submissions"], tmp_path, Policy())
    assert report.ok, [str(e) for e in report.errors]
    _baseline_pair(tmp_path, baseline="ml_masters/nope")
    report = check_paths([tmp_path / "submissions"], tmp_path, Policy())
    assert [str(e) for e in report.errors] == [
        "submissions/ml_masters/whisper-int8.yaml:9:13: baseline 'ml_masters/nope' does not "
        "exist; add submissions/ml_masters/nope.yaml or fix the id"
    ]


def test_cross_file_baseline_must_share_task(tmp_path: Path) -> None:
    int8 = _baseline_pair(tmp_path)
    lm = (
        VALID.replace("task: automatic-speech-recognition", "task: causal-lm")
        .replace("metrics: [cer, wer]", "metrics: [perplexity]")
        .replace("quality: {cer: 0.0134, wer: 0.0383}", "quality: {perplexity: 12.5}")
        .replace("input: {seconds: 30}", "input: {prompt_tokens: 8, new_tokens: 8}")
    )
    write(tmp_path, lm, rel="submissions/ml_masters/whisper-fp32.yaml")
    report = check_paths([int8], tmp_path, Policy())
    assert [str(e) for e in report.errors] == [
        "submissions/ml_masters/whisper-int8.yaml:9:13: baseline 'ml_masters/whisper-fp32' is a "
        "causal-lm submission, this one is automatic-speech-recognition; a baseline must solve "
        "the same task"
    ]


def test_cross_file_baseline_cycle(tmp_path: Path) -> None:
    a = VALID.replace("  name: Whisper\n", "  name: A\n  baseline: ml_masters/b\n")
    b = VALID.replace("  name: Whisper\n", "  name: B\n  baseline: ml_masters/a\n")
    write(tmp_path, a, rel="submissions/ml_masters/a.yaml")
    write(tmp_path, b, rel="submissions/ml_masters/b.yaml")
    report = check_paths([tmp_path / "submissions"], tmp_path, Policy())
    assert [str(e) for e in report.errors] == [
        "submissions/ml_masters/a.yaml:9:13: baselines form a cycle through 'ml_masters/a'; a "
        "chain of baselines must end in an uncompressed model",
        "submissions/ml_masters/b.yaml:9:13: baselines form a cycle through 'ml_masters/b'; a "
        "chain of baselines must end in an uncompressed model",
    ]


def test_cross_file_duplicate_ids(tmp_path: Path) -> None:
    write(tmp_path, VALID, rel="submissions/ml_masters/whisper.yaml")
    write(tmp_path, VALID, rel="submissions/ml_masters/whisper.yml")
    report = check_paths([tmp_path / "submissions"], tmp_path, Policy())
    assert [str(e) for e in report.errors] == [
        "submissions/ml_masters/whisper.yml: duplicate submission id 'ml_masters/whisper' "
        "(also submissions/ml_masters/whisper.yaml); keep one file"
    ]

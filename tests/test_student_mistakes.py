"""Mistakes students really made (issue 16), each caught by ``mcval check`` with its fix.

One section per item of the issue: the metric name is checked before its value, decimal
megabytes, mistakes that used to pass ``check`` and fail only on the GPU runner, the
spellings of "not measured", and placeholders left by a template or ``import-table``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from mcval.cli import main
from mcval.errors import InputError, InputErrors
from mcval.policy import Policy
from mcval.submission import LoadedSubmission, load_submission
from mcval.verdict import MeasuredFigures, judge

FILE = "submissions/t1/row.yaml"
SHA = "0123456789abcdef0123456789abcdef01234567"
ROW = f"""\
schema: 1
team: t1
model:
  id: org/bert-tiny
  revision: {SHA}
  task: text-classification
method:
  name: fp32
evaluation:
  dataset: {{path: nyu-mll/glue, name: sst2, split: validation}}
reported:
  weights_mb: 16.73
  quality: {{accuracy: 0.81}}
"""
# Lines: 4 model.id, 5 revision, 6 task, 10 dataset, 12 weights_mb, 13 quality.


def write(repo: Path, text: str, rel: str = FILE) -> Path:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(repo: Path, text: str, rel: str = FILE) -> LoadedSubmission:
    return load_submission(write(repo, text, rel), repo)


def errors_of(repo: Path, text: str, rel: str = FILE) -> list[str]:
    with pytest.raises((InputError, InputErrors)) as info:
        load_submission(write(repo, text, rel), repo)
    exc = info.value
    return [str(e) for e in exc.errors] if isinstance(exc, InputErrors) else [str(exc)]


def as_task(task: str, quality: str, text: str = ROW) -> str:
    return text.replace("task: text-classification", f"task: {task}").replace(
        "quality: {accuracy: 0.81}", f"quality: {quality}"
    )


# --- 1. the metric name is checked before its value ------------------------------------


def test_capitalised_metric_names_are_read_as_the_metric_and_said_so(tmp_path: Path) -> None:
    loaded = load(tmp_path, ROW.replace("{accuracy: 0.81}", "{Accuracy: 32.25%, F1: 0.30}"))
    assert loaded.submission.reported.quality == {"accuracy": 0.3225, "macro_f1": 0.30}
    assert [c.describe() for c in loaded.conversions] == [
        "reported.quality.Accuracy: read as accuracy; '32.25%' read as 0.3225",
        "reported.quality.F1: read as macro_f1",
    ]


def test_metric_aliases_in_evaluation_metrics(tmp_path: Path) -> None:
    text = ROW.replace(
        "  dataset: {path: nyu-mll/glue, name: sst2, split: validation}\n",
        "  dataset: {path: nyu-mll/glue, name: sst2, split: validation}\n"
        "  metrics: [Accuracy, F1]\n",
    )
    loaded = load(tmp_path, text)
    assert loaded.submission.evaluation.metrics == ["accuracy", "macro_f1"]
    assert [c.describe() for c in loaded.conversions] == [
        "evaluation.metrics[0]: read as accuracy",
        "evaluation.metrics[1]: read as macro_f1",
    ]


def test_lowercase_decimal_spelling_in_the_note(tmp_path: Path) -> None:
    loaded = load(tmp_path, ROW.replace("weights_mb: 16.73", "weights_mb: 96.66Mb"))
    assert [c.describe() for c in loaded.conversions] == [
        "reported.weights_mb: '96.66Mb' read as 96.66 MiB (2^20 bytes a MB; a decimal MB is "
        "written '96.66 MB (10^6)')"
    ]


@pytest.mark.parametrize(
    ("task", "written", "metric"),
    [
        ("token-classification", "{F1: 0.83}", "entity_f1"),
        ("translation", "{BLEU: 27.1}", "bleu"),
        ("automatic-speech-recognition", '{WER: "3.83%", CER: 0.0134}', "wer"),
        ("causal-lm", "{PPL: 12.3}", "perplexity"),
    ],
)
def test_metric_aliases_per_task(tmp_path: Path, task: str, written: str, metric: str) -> None:
    text = as_task(task, written)
    text = text.replace("input: {tokens: 128}\n", "")
    loaded = load(tmp_path, text)
    assert metric in loaded.submission.reported.quality
    assert all(k == k.lower() for k in loaded.submission.reported.quality)


def test_unknown_metric_is_the_error_not_its_percent_sign(tmp_path: Path) -> None:
    assert errors_of(tmp_path, ROW.replace("{accuracy: 0.81}", "{top1: 32.25%}")) == [
        f"{FILE}:13:13: quality metric 'top1' is not computed for text-classification; "
        "use accuracy, macro_f1"
    ]
    assert errors_of(tmp_path, ROW.replace("{accuracy: 0.81}", '{bleu: "62%"}')) == [
        f"{FILE}:13:13: quality metric 'bleu' is not computed for text-classification; "
        "use accuracy, macro_f1"
    ]


def test_bleu_as_a_percentage_says_it_is_a_score(tmp_path: Path) -> None:
    assert errors_of(tmp_path, as_task("translation", '{bleu: "62%"}')) == [
        f"{FILE}:13:19: reported.quality.bleu: '62%': BLEU is a 0–100 score, not a "
        "percentage; write 62"
    ]


def test_the_same_metric_twice_is_an_error(tmp_path: Path) -> None:
    assert errors_of(tmp_path, ROW.replace("{accuracy: 0.81}", "{accuracy: 0.81, Acc: 0.8}")) == [
        f"{FILE}:13:29: quality metric 'Acc' is accuracy, which is already given; keep one"
    ]


# --- 2. decimal megabytes ------------------------------------------------------------------


def test_conversion_notes_say_mib(tmp_path: Path) -> None:
    loaded = load(tmp_path, ROW.replace("weights_mb: 16.73", 'weights_mb: "1.33 GB"'))
    assert [c.describe() for c in loaded.conversions] == [
        "reported.weights_mb: '1.33 GB' read as 1361.92 MiB (2^30 bytes a GB; a decimal GB "
        "is written '1.33 GB (10^9)')"
    ]


@pytest.mark.parametrize(
    ("written", "mib"),
    [
        ('"1.33 GB (10^9)"', 1.33e9 / 2**20),
        ('"1.33Gb (10^9)"', 1.33e9 / 2**20),
        ('"96.66 MB (10^6)"', 96.66e6 / 2**20),
        ('"500 kB (10^3)"', 500e3 / 2**20),
    ],
)
def test_explicit_decimal_sizes(tmp_path: Path, written: str, mib: float) -> None:
    loaded = load(tmp_path, ROW.replace("weights_mb: 16.73", f"weights_mb: {written}"))
    assert loaded.submission.reported.weights_mb == pytest.approx(mib)
    assert loaded.conversions[0].describe() == (
        f"reported.weights_mb: {written.strip(chr(34))!r} read as {mib:.6g} MiB"
    )


def test_decimal_suffix_must_match_the_unit(tmp_path: Path) -> None:
    text = ROW.replace("weights_mb: 16.73", 'weights_mb: "1.33 GB (10^6)"')
    assert errors_of(tmp_path, text) == [
        f"{FILE}:12:15: reported.weights_mb: '1.33 GB (10^6)': a decimal GB is 10^9 bytes; "
        "write '1.33 GB (10^9)'"
    ]


RUNNER = MeasuredFigures(
    weights_mb=1.33e9 / 2**20,  # bert-large-NER: 332.5 M fp32 parameters
    quality={"accuracy": 0.81},
    not_applicable={},
    cpu=None,
    gpu=None,
)


@pytest.mark.parametrize(
    ("written", "note"),
    [
        (
            '"1.33Gb"',
            "outside ±1 % or ±0.01 MB; 1361.92 MB is ×1.074 the measured size: it looks like "
            "decimal GB (10^9 bytes) read as 2^30; in the course's MB (2^20 bytes) it is "
            "1268.39: write 1268.39 or '1.33 GB (10^9)'",
        ),
        (
            "1330",
            "outside ±1 % or ±0.01 MB; 1330 MB is ×1.049 the measured size: it looks like "
            "decimal MB (10^6 bytes); in the course's MB (2^20 bytes) it is 1268.39: write "
            "1268.39 or '1330 MB (10^6)'",
        ),
    ],
)
def test_a_size_off_by_the_decimal_ratio_says_so(tmp_path: Path, written: str, note: str) -> None:
    loaded = load(tmp_path, ROW.replace("weights_mb: 16.73", f"weights_mb: {written}"))
    size = next(m for m in judge(loaded, RUNNER, Policy()).metrics if m.field == "weights_mb")
    assert (size.status, size.note) == ("fail", note)


def test_a_size_off_by_another_ratio_has_no_decimal_hint(tmp_path: Path) -> None:
    loaded = load(tmp_path, ROW.replace("weights_mb: 16.73", "weights_mb: 1400"))
    size = next(m for m in judge(loaded, RUNNER, Policy()).metrics if m.field == "weights_mb")
    assert (size.status, size.note) == ("fail", "outside ±1 % or ±0.01 MB")


# --- 3. mistakes that used to pass check and fail only on the runner -----------------------


def test_unknown_column_role(tmp_path: Path) -> None:
    text = ROW.replace(
        "  dataset: {path: nyu-mll/glue, name: sst2, split: validation}\n",
        "  dataset: {path: nyu-mll/glue, name: sst2, split: validation}\n"
        "  columns: {picture: img}\n",
    )
    assert errors_of(tmp_path, text) == [
        f"{FILE}:11:13: evaluation.columns: unknown role 'picture' for text-classification; "
        "roles: text, text_pair, label"
    ]


def test_url_as_model_id(tmp_path: Path) -> None:
    text = ROW.replace("id: org/bert-tiny", "id: https://huggingface.co/org/bert-tiny/tree/main")
    assert errors_of(tmp_path, text) == [
        f"{FILE}:4:7: model.id: 'https://huggingface.co/org/bert-tiny/tree/main' is a web "
        "address; write the hub id 'org/bert-tiny'"
    ]


def test_revision_placeholder_from_the_docs(tmp_path: Path) -> None:
    text = ROW.replace(f"revision: {SHA}", "revision: <sha>").replace(
        "split: validation}", "split: validation, revision: <commit sha>}"
    )
    assert errors_of(tmp_path, text) == [
        f"{FILE}:5:13: model.revision: '<sha>' is a placeholder; write the model's 40-character "
        "commit sha (submissions/README.md says where to find it)",
        f"{FILE}:10:74: evaluation.dataset.revision: '<commit sha>' is a placeholder; write the "
        "dataset's 40-character commit sha (submissions/README.md says where to find it)",
    ]


def test_zero_weight_size(tmp_path: Path) -> None:
    assert errors_of(tmp_path, ROW.replace("weights_mb: 16.73", "weights_mb: 0")) == [
        f"{FILE}:12:15: reported.weights_mb: a model cannot weigh 0 MB; write the size of "
        "its weights in MiB, or leave the field out if you did not measure it"
    ]


def test_bleu_written_as_a_zero_to_one_score(tmp_path: Path) -> None:
    assert errors_of(tmp_path, as_task("translation", "{bleu: 0.62, chrf: 55.1}")) == [
        f"{FILE}:13:19: bleu = 0.62 looks like a 0–1 score; BLEU is 0–100 here: write 62"
    ]


def local_model(repo: Path, config: dict[str, object]) -> None:
    folder = repo / "models/tiny"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def test_decoder_only_model_under_translation(tmp_path: Path) -> None:
    local_model(tmp_path, {"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    text = as_task("translation", "{bleu: 27.1}").replace("id: org/bert-tiny", "id: ./models/tiny")
    assert errors_of(tmp_path, text) == [
        f"{FILE}:6:9: model.task: translation needs an encoder-decoder model, and "
        "models/tiny/config.json describes LlamaForCausalLM (decoder-only); use causal-lm or "
        "another model"
    ]


def test_encoder_decoder_model_under_causal_lm(tmp_path: Path) -> None:
    local_model(
        tmp_path,
        {"architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True},
    )
    text = as_task("causal-lm", "{perplexity: 12.3}").replace(
        "id: org/bert-tiny", "id: ./models/tiny"
    )
    assert errors_of(tmp_path, text) == [
        f"{FILE}:6:9: model.task: causal-lm needs a decoder-only model, and "
        "models/tiny/config.json describes T5ForConditionalGeneration (encoder-decoder); use "
        "translation or another model"
    ]


def test_ctc_model_under_speech_recognition(tmp_path: Path) -> None:
    local_model(tmp_path, {"architectures": ["Wav2Vec2ForCTC"], "model_type": "wav2vec2"})
    text = as_task("automatic-speech-recognition", "{wer: 0.1}").replace(
        "id: org/bert-tiny", "id: ./models/tiny"
    )
    assert errors_of(tmp_path, text) == [
        f"{FILE}:6:9: model.task: automatic-speech-recognition needs an encoder-decoder "
        "model, and models/tiny/config.json describes Wav2Vec2ForCTC (not encoder-decoder); "
        "speech models are measured as sequence-to-sequence (AutoModelForSpeechSeq2Seq): use "
        "an encoder-decoder model such as Whisper"
    ]


def test_fitting_local_model_passes(tmp_path: Path) -> None:
    local_model(tmp_path, {"architectures": ["MarianMTModel"], "is_encoder_decoder": True})
    text = as_task("translation", "{bleu: 27.1}").replace("id: org/bert-tiny", "id: ./models/tiny")
    assert load(tmp_path, text).submission.model.task == "translation"


# --- 4. "not measured" spellings -----------------------------------------------------------


def test_not_measured_spellings(tmp_path: Path) -> None:
    text = ROW.replace(
        "  weights_mb: 16.73\n",
        '  weights_mb: 16.73\n  latency_cpu_ms: N/A\n  latency_gpu_ms: "-"\n  ram_mb: —\n'
        "  vram_mb: n/a\n",
    ).replace("{accuracy: 0.81}", "{accuracy: 0.81, macro_f1: –}")
    loaded = load(tmp_path, text)
    reported = loaded.submission.reported
    assert (reported.latency_cpu_ms, reported.latency_gpu_ms, reported.ram_mb) == (None,) * 3
    assert reported.vram_mb is None
    assert reported.quality == {"accuracy": 0.81}
    assert [c.describe() for c in loaded.conversions] == [
        "reported.latency_cpu_ms: 'N/A' read as not measured (as if left out)",
        "reported.latency_gpu_ms: '-' read as not measured (as if left out)",
        "reported.ram_mb: '—' read as not measured (as if left out)",
        "reported.vram_mb: 'n/a' read as not measured (as if left out)",
        "reported.quality.macro_f1: '–' read as not measured (as if left out)",
    ]


def test_a_bare_dash_says_to_quote_it(tmp_path: Path) -> None:
    text = ROW.replace("weights_mb: 16.73", "weights_mb: -")
    (error,) = errors_of(tmp_path, text)
    assert error == (
        f"{FILE}:12:15: invalid YAML: sequence entries are not allowed here (a dash alone "
        'starts a list; for "not measured" write N/A or "-", or leave the field out)'
    )


# --- 9. placeholders fail check -------------------------------------------------------------


def test_import_placeholders_are_errors(tmp_path: Path) -> None:
    text = (
        ROW.replace("team: t1", "team: TODO-team")
        .replace("path: nyu-mll/glue", "path: TODO/dataset")
        .replace("name: fp32", "name: TODO method")
    )
    assert errors_of(tmp_path, text, rel="submissions/TODO-team/row.yaml") == [
        "submissions/TODO-team/row.yaml:2:7: team: 'TODO-team' is a placeholder; write your "
        "team's name (and move the file to submissions/<team>/)",
        "submissions/TODO-team/row.yaml:8:9: method.name: 'TODO method' is a placeholder; "
        "write the method",
        "submissions/TODO-team/row.yaml:10:19: evaluation.dataset.path: 'TODO/dataset' is a "
        "placeholder; write the dataset you evaluated on",
    ]


def test_nothing_reported_is_a_warning(tmp_path: Path) -> None:
    text = ROW.replace("  weights_mb: 16.73\n  quality: {accuracy: 0.81}\n", "  {}\n").replace(
        "reported:\n  {}", "reported: {}"
    )
    loaded = load(tmp_path, text)
    assert [str(w) for w in loaded.warnings] == [
        f"{FILE}:11:1: reported: no number is reported; the bot will measure the row but "
        "has nothing of yours to check (run `mcval measure` and copy its figures here)"
    ]


# --- all at once, from the command line -----------------------------------------------------


def test_check_reports_every_runner_only_mistake_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ROW.replace("weights_mb: 16.73", "weights_mb: 0").replace(
        "id: org/bert-tiny", "id: https://huggingface.co/org/bert-tiny"
    )
    text = text.replace("method:\n  name: fp32\n", "method:\n  name: int8\n  baseline: t1/base\n")
    text = text.replace("revision: " + SHA, "revision: [12]")  # a schema error too
    write(tmp_path, text)
    assert main(["check", str(tmp_path / "submissions"), "--repo", str(tmp_path)]) == 2
    assert capsys.readouterr().out.splitlines() == [
        f"error  {FILE}:4:7: model.id: 'https://huggingface.co/org/bert-tiny' is a web "
        "address; write the hub id 'org/bert-tiny'",
        f"error  {FILE}:5:13: model.revision: expected text, got a list (put it in quotes)",
        f"error  {FILE}:9:13: baseline 't1/base' does not exist; add "
        "submissions/t1/base.yaml or fix the id",
        f"error  {FILE}:13:15: reported.weights_mb: a model cannot weigh 0 MB; write the size "
        "of its weights in MiB, or leave the field out if you did not measure it",
        "0 of 1 submission file(s) valid",
    ]

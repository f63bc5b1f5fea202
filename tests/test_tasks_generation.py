"""Translation (tiny T5) and speech recognition (tiny Whisper): metrics equal sacrebleu /
jiwer on independently generated outputs; batched equals one-by-one; exact-length
benchmark generation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
import sacrebleu
import soundfile
import torch

from mcval.submission.schema import Benchmark, Evaluation
from mcval.tasks import get_task
from mcval.tasks.base import TaskDataError
from mcval.tasks.scoring import normalize_transcript
from tests.tiny_models import TASK_CORPUS, build_tiny_t5, build_tiny_whisper

MT = get_task("translation")
ASR = get_task("automatic-speech-recognition")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def evaluation(data_file: str, **fields: Any) -> Evaluation:
    fields["dataset"] = {"path": "json", "data_files": [data_file]}
    return Evaluation.model_validate(fields)


# --- translation -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = build_tiny_t5(tmp_path_factory.mktemp("t5"), seed=2)  # seed 2: varied outputs
    return MT.model_class().from_pretrained(path).eval(), MT.load_preprocessor(path, None, None)


@pytest.mark.slow
def test_bleu_and_chrf_equal_sacrebleu_on_greedy_outputs(
    t5: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tokenizer = t5
    sources = [TASK_CORPUS[i % 8][: 12 + 4 * i] for i in range(6)]
    hyps = []
    for source in sources:
        encoded = tokenizer(source, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=12, do_sample=False, num_beams=1)
        hyps.append(tokenizer.decode(out[0], skip_special_tokens=True).strip())
    # references: the model's own output for some rows (so scores are neither 0 nor 100)
    refs = [hyp if i % 3 == 0 else TASK_CORPUS[(i + 3) % 8] for i, hyp in enumerate(hyps)]
    pairs = [{"translation": {"en": s, "de": r}} for s, r in zip(sources, refs, strict=True)]
    write_jsonl(tmp_path / "mt.jsonl", pairs)
    columns = {"source": "translation.en", "target": "translation.de"}
    ev = evaluation("mt.jsonl", columns=columns, max_new_tokens=12, batch_size=4)
    result = MT.evaluate(model, tokenizer, ev, tmp_path, "cpu")
    assert list(result) == ["bleu", "chrf"]
    assert result["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert result["chrf"] == sacrebleu.corpus_chrf(hyps, [refs]).score
    assert 0.0 < result["chrf"] < 100.0  # (BLEU is 0 here: random outputs share no 4-gram)
    single = MT.evaluate(
        model,
        tokenizer,
        evaluation("mt.jsonl", columns=columns, max_new_tokens=12, batch_size=1),
        tmp_path,
        "cpu",
    )
    assert single == result


def test_translation_benchmark_generates_exactly_new_tokens(t5: tuple[Any, Any]) -> None:
    model, tokenizer = t5
    bench = Benchmark.model_validate({"input": {"prompt_tokens": 20, "new_tokens": 9}})
    out = MT.benchmark_call(model, tokenizer, bench, "cpu")()
    assert out.shape == (1, 1 + 9)  # decoder start token + 9 new tokens


# --- speech recognition ------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = build_tiny_whisper(tmp_path_factory.mktemp("whisper"))
    return ASR.model_class().from_pretrained(path).eval(), ASR.load_preprocessor(path, None, None)


def _tone(seconds: float, rate: int, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture()
def asr_repo(tmp_path: Path) -> Path:
    """Clips at 8/16/22.05 kHz (so resampling is exercised) with reference transcripts."""
    rows = []
    for i, (rate, seconds) in enumerate([(16000, 1.0), (8000, 1.5), (22050, 0.7), (16000, 2.0)]):
        name = f"clips/c{i}.wav"
        (tmp_path / "asr" / "clips").mkdir(parents=True, exist_ok=True)
        soundfile.write(str(tmp_path / "asr" / name), _tone(seconds, rate, 200 + 90 * i), rate)
        rows.append({"audio": name, "text": TASK_CORPUS[i].capitalize() + "."})
    write_jsonl(tmp_path / "asr" / "eval.jsonl", rows)
    return tmp_path


@pytest.mark.slow
def test_wer_and_cer_equal_jiwer_on_greedy_transcripts(
    whisper: tuple[Any, Any], asr_repo: Path
) -> None:
    from mcval.tasks.audio import load_audio

    model, processor = whisper
    rows = [json.loads(x) for x in (asr_repo / "asr" / "eval.jsonl").read_text().splitlines()]
    hyps = []
    for row in rows:
        clip = load_audio(asr_repo / "asr" / row["audio"], 16000)
        feats = processor.feature_extractor(clip, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(feats.input_features, max_new_tokens=10, do_sample=False)
        hyps.append(processor.tokenizer.decode(out[0], skip_special_tokens=True).strip())
    refs = [normalize_transcript(r["text"]) for r in rows]
    norm_hyps = [normalize_transcript(h) for h in hyps]
    ev = evaluation("asr/eval.jsonl", max_new_tokens=10, batch_size=3)
    result = ASR.evaluate(model, processor, ev, asr_repo, "cpu")
    assert list(result) == ["cer", "wer"]
    assert result["wer"] == jiwer.wer(refs, norm_hyps)
    assert result["cer"] == jiwer.cer(refs, norm_hyps)
    assert result["wer"] > 0.0
    single = ASR.evaluate(
        model,
        processor,
        evaluation("asr/eval.jsonl", max_new_tokens=10, batch_size=1),
        asr_repo,
        "cpu",
    )
    assert single == result


def test_unreadable_and_too_long_clips_name_the_row(
    whisper: tuple[Any, Any], asr_repo: Path
) -> None:
    model, processor = whisper
    (asr_repo / "asr" / "clips" / "broken.wav").write_bytes(b"RIFF....not a wav")
    write_jsonl(
        asr_repo / "asr" / "bad.jsonl",
        [{"audio": "clips/c0.wav", "text": "hi"}, {"audio": "clips/broken.wav", "text": "x"}],
    )
    with pytest.raises(TaskDataError) as err:
        ASR.evaluate(model, processor, evaluation("asr/bad.jsonl"), asr_repo, "cpu")
    assert str(err.value).startswith("asr/bad.jsonl row 2: cannot read broken.wav as audio: ")
    soundfile.write(str(asr_repo / "asr" / "clips" / "long.wav"), _tone(31.0, 8000, 300), 8000)
    write_jsonl(asr_repo / "asr" / "long.jsonl", [{"audio": "clips/long.wav", "text": "hi"}])
    with pytest.raises(TaskDataError) as err:
        ASR.evaluate(model, processor, evaluation("asr/long.jsonl"), asr_repo, "cpu")
    assert str(err.value) == (
        "asr/long.jsonl row 1: the clip lasts 31.0 s, longer than the model's 30 s window; "
        "choose shorter clips"
    )


@pytest.mark.slow
def test_asr_benchmark_is_fixed_audio_and_exact_token_count(whisper: tuple[Any, Any]) -> None:
    model, processor = whisper
    bench = Benchmark.model_validate({"batch_size": 2, "input": {"seconds": 5}})
    call = ASR.benchmark_call(model, processor, bench, "cpu")
    out = call()
    assert out.shape[0] == 2
    assert out.shape[1] - 1 == 15 or out.shape[1] == 15  # ceil(3 tokens/s × 5 s) new tokens
    assert torch.equal(out, call())
    capped = ASR.benchmark_call(
        model, processor, Benchmark.model_validate({"input": {"seconds": 30}}), "cpu"
    )()
    # 90 tokens capped at max_target_positions 64 − 1 (its prompt: the start token only)
    assert capped.shape[1] in (63, 64)
    with pytest.raises(
        TaskDataError, match=r"benchmark\.input\.seconds 45 exceeds the model's 30 s"
    ):
        ASR.benchmark_call(
            model, processor, Benchmark.model_validate({"input": {"seconds": 45}}), "cpu"
        )

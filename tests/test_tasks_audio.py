"""mcval's audio path: soundfile reading, mono mix-down, resampling length and content."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mcval.tasks.audio import load_audio, read_audio, resample
from mcval.tasks.base import TaskDataError


def _audioeval_en() -> list[Path]:
    spec = importlib.util.find_spec("pytest_audioeval")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "samples" / "audio" / "en"
    return sorted(root.glob("*.wav"))


EN_CLIPS = _audioeval_en()


@pytest.mark.skipif(not EN_CLIPS, reason="pytest-audioeval samples are not installed")
@pytest.mark.parametrize("clip", EN_CLIPS, ids=lambda p: p.stem)
@pytest.mark.parametrize("target", [16000, 8000, 22050, 44100])
def test_real_english_clips_decode_with_right_length_and_rate(clip: Path, target: int) -> None:
    info = soundfile.info(str(clip))
    samples, rate = read_audio(clip)
    assert rate == info.samplerate
    assert samples.shape == (info.frames,)
    assert samples.dtype == np.float32
    out = load_audio(clip, target)
    assert out.shape == (round(info.frames * target / info.samplerate),)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert 0.0 < np.abs(out).max() <= 1.5  # real speech, not silence, not blown up


def test_stereo_is_mixed_to_mono_and_tone_survives_resampling(tmp_path: Path) -> None:
    rate, seconds = 44100, 0.5
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.1 * np.ones_like(t)
    path = tmp_path / "tone.flac"
    soundfile.write(str(path), np.stack([left, right], axis=1), rate)
    mono, got_rate = read_audio(path)
    assert got_rate == rate
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-4)
    out = load_audio(path, 16000)
    assert len(out) == round(len(t) * 16000 / rate) == 8000
    spectrum = np.abs(np.fft.rfft(out - out.mean()))
    peak_hz = np.argmax(spectrum) * 16000 / len(out)
    assert abs(peak_hz - 440) <= 2.0


def test_same_rate_is_untouched_and_bytes_are_readable(tmp_path: Path) -> None:
    samples = np.linspace(-0.5, 0.5, 1600, dtype=np.float32)
    assert resample(samples, 16000, 16000) is samples
    path = tmp_path / "x.wav"
    soundfile.write(str(path), samples, 16000, subtype="FLOAT")
    from_bytes, rate = read_audio(path.read_bytes())
    assert rate == 16000
    np.testing.assert_array_equal(from_bytes, samples)


def test_unreadable_audio_names_the_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio")
    with pytest.raises(TaskDataError) as err:
        load_audio(bad, 16000, where="data/asr.jsonl row 3")
    assert str(err.value).startswith("data/asr.jsonl row 3: cannot read bad.wav as audio: ")


def test_undecoded_audio_feature_bytes_go_through_the_same_path(tmp_path: Path) -> None:
    """Hub datasets keep audio as an ``Audio`` feature; mcval reads its bytes undecoded."""
    import io

    import datasets

    from mcval.submission.schema import DatasetSpec
    from mcval.tasks.data import load_slice, media_source

    samples = np.sin(np.arange(12000) / 7).astype(np.float32) * 0.2
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 24000, format="WAV", subtype="FLOAT")
    table = datasets.Dataset.from_dict(
        {"audio": [{"bytes": buffer.getvalue(), "path": "clip.wav"}], "text": ["hi"]}
    ).cast_column("audio", datasets.Audio(decode=False))
    table.to_parquet(str(tmp_path / "asr.parquet"))
    data = load_slice(
        DatasetSpec.model_validate({"path": "parquet", "data_files": ["asr.parquet"]}),
        tmp_path,
        {"audio": "audio", "text": "text"},
        media={"audio": "audio"},
    )
    source = media_source(data.rows[0], "audio", tmp_path)
    assert isinstance(source, bytes)
    out = load_audio(source, 16000, data.rows[0].where)
    assert out.shape == (8000,)


def test_soxr_is_deterministic_and_the_original_clip_is_described(tmp_path: Path) -> None:
    from mcval.tasks.audio import RESAMPLER, load_clip

    rate = 22050
    t = np.arange(rate) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 500 * t)], 1)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), stereo, rate, subtype="FLOAT")
    first, info = load_clip(path, 16000)
    again, _ = load_clip(path, 16000)
    assert RESAMPLER == "soxr VHQ"
    assert (info.rate, info.channels, info.frames) == (22050, 2, 22050)
    assert first.shape == (16000,)
    np.testing.assert_array_equal(first, again)
    spectrum = np.abs(np.fft.rfft(first))
    peaks = sorted(np.argsort(spectrum)[-2:] * 16000 / len(first))
    assert peaks == pytest.approx([300, 500], abs=2)

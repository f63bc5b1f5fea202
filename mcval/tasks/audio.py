"""Audio for speech recognition: read with soundfile, mix to mono, resample.

``datasets`` cannot decode audio here (it needs torchcodec), so mcval reads every clip
itself: a local file or the encoded bytes of a hub ``Audio`` feature, through libsndfile
(WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1).

* Multi-channel audio is averaged to mono (what Whisper's and wav2vec2's extractors expect).
* Resampling uses ``scipy.signal.resample_poly`` (polyphase FIR with a Kaiser window, the
  standard band-limited rational resampler) with the rate ratio reduced by its gcd. Its
  output has ``ceil(n * target / source)`` samples; mcval trims it to
  ``round(n * target / source)``, so the length is exactly the clip's duration at the new
  rate.
"""

from __future__ import annotations

import io
from math import gcd
from pathlib import Path

import numpy as np

from mcval.tasks.base import TaskDataError


def read_audio(source: Path | bytes, where: str = "") -> tuple[np.ndarray, int]:
    """Mono float32 samples and their sampling rate; ``TaskDataError`` naming ``where``."""
    import soundfile

    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        data, rate = soundfile.read(handle, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors are RuntimeError / LibsndfileError
        name = "audio bytes" if isinstance(source, bytes) else Path(source).name
        prefix = f"{where}: " if where else ""
        raise TaskDataError(f"{prefix}cannot read {name} as audio: {exc}") from exc
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def resampled_length(frames: int, source_rate: int, target_rate: int) -> int:
    """Samples after resampling: ``round(frames * target / source)``."""
    return round(frames * target_rate / source_rate)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling to ``target_rate`` (see the module docstring)."""
    if source_rate == target_rate:
        return samples
    from scipy.signal import resample_poly

    g = gcd(source_rate, target_rate)
    out = resample_poly(samples, target_rate // g, source_rate // g)
    return np.ascontiguousarray(
        out[: resampled_length(len(samples), source_rate, target_rate)], dtype=np.float32
    )


def load_audio(source: Path | bytes, target_rate: int, where: str = "") -> np.ndarray:
    """Mono float32 samples of a clip at ``target_rate`` (the feature extractor's rate)."""
    samples, rate = read_audio(source, where)
    if samples.size == 0:
        raise TaskDataError(f"{where + ': ' if where else ''}the audio clip is empty")
    return resample(samples, rate, target_rate)

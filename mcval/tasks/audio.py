"""Audio for speech recognition: read with soundfile, mix to mono, resample with soxr.

``datasets`` cannot decode audio here (it needs torchcodec), so mcval reads every clip
itself: a local file or the encoded bytes of a hub ``Audio`` feature, through libsndfile
(WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1). The same functions run in
``mcval measure`` and on the bot, so a clip is turned into the same samples everywhere.

* Multi-channel audio is averaged to mono (the mean of the channels, sample by sample):
  what Whisper's and wav2vec2's extractors expect.
* Resampling: ``RESAMPLER``, libsoxr's very-high-quality band-limited resampler (the
  ``soxr`` package, ``quality="VHQ"``), deterministic. The resampler decides transcripts
  (two good resamplers gave different Whisper outputs on one 22.05 kHz clip), so it is one,
  named in the results file. Its output is trimmed (or padded with zeros, at most a
  sample) to ``round(n * target / source)`` samples: exactly the clip's duration.
* Each clip's original rate and channel count are kept (``ClipInfo``) and recorded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcval.tasks.base import TaskDataError

RESAMPLER = "soxr VHQ"
"""The resampler's name as the results file and the comment show it."""


@dataclass(frozen=True)
class ClipInfo:
    """What a clip was before mcval touched it."""

    rate: int
    channels: int
    frames: int


def read_clip(source: Path | bytes, where: str = "") -> tuple[np.ndarray, ClipInfo]:
    """Mono float32 samples and the clip's original form; ``TaskDataError`` naming ``where``."""
    import soundfile

    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        data, rate = soundfile.read(handle, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors are RuntimeError / LibsndfileError
        name = "audio bytes" if isinstance(source, bytes) else Path(source).name
        prefix = f"{where}: " if where else ""
        raise TaskDataError(f"{prefix}cannot read {name} as audio: {exc}") from exc
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    info = ClipInfo(rate=int(rate), channels=int(data.shape[1]), frames=int(data.shape[0]))
    return np.ascontiguousarray(mono, dtype=np.float32), info


def read_audio(source: Path | bytes, where: str = "") -> tuple[np.ndarray, int]:
    """Mono float32 samples and their sampling rate."""
    samples, info = read_clip(source, where)
    return samples, info.rate


def resampled_length(frames: int, source_rate: int, target_rate: int) -> int:
    """Samples after resampling: ``round(frames * target / source)``."""
    return round(frames * target_rate / source_rate)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """``RESAMPLER`` to ``target_rate``, trimmed to the exact length (module docstring)."""
    if source_rate == target_rate:
        return samples
    import soxr

    out = soxr.resample(samples, source_rate, target_rate, quality="VHQ")
    length = resampled_length(len(samples), source_rate, target_rate)
    if len(out) < length:
        out = np.pad(out, (0, length - len(out)))
    return np.ascontiguousarray(out[:length], dtype=np.float32)


def load_clip(
    source: Path | bytes, target_rate: int, where: str = ""
) -> tuple[np.ndarray, ClipInfo]:
    """Mono float32 samples at ``target_rate`` (the feature extractor's) and the original."""
    samples, info = read_clip(source, where)
    if samples.size == 0:
        raise TaskDataError(f"{where + ': ' if where else ''}the audio clip is empty")
    return resample(samples, info.rate, target_rate), info


def load_audio(source: Path | bytes, target_rate: int, where: str = "") -> np.ndarray:
    """Mono float32 samples of a clip at ``target_rate``."""
    return load_clip(source, target_rate, where)[0]

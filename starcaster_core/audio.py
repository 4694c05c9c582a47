"""Audio features aligned to video frames, computed with librosa.

The waveform is mixed to mono, resampled to the model's rate and turned into a log-mel
spectrogram at 100 Hz. Every video frame i (centred at (i + 0.5) / fps seconds) then gets a
window of K mel frames spread over `audio_span` seconds around it, linearly interpolated, so any
fps works. Outside the audio the window sees silence. A clip of D seconds gives exactly
ceil(D * fps) frames: never shorter than the audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .config import ModelConfig

MEL_HOP_SECONDS = 0.01  # 100 mel frames per second
DB_FLOOR, DB_CEIL = -100.0, 20.0  # log-mel range kept; features are (dB + 40) / 30
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 768000  # below 4 kHz there is no speech band left
MAX_AMPLITUDE = 1000.0  # float audio is nominally in [-1, 1]; far beyond that it is not audio


class AudioError(ValueError):
    """Audio that cannot be turned into features (with what to do about it)."""


@dataclass(frozen=True)
class AudioFeatures:
    features: torch.Tensor  # (T, K, M): K mel frames around each of T video frames
    fps: float
    duration: float  # seconds of audio these frames cover

    @property
    def n_frames(self) -> int:
        return self.features.shape[0]


def frame_count(duration: float, fps: float) -> int:
    """Video frames needed to cover `duration` seconds at `fps`: ceil(duration * fps)."""
    return max(1, math.ceil(duration * fps - 1e-9))


def _normalise(db: np.ndarray) -> np.ndarray:
    return (np.clip(db, DB_FLOOR, DB_CEIL) + 40.0) / 30.0


def log_mel(mono: np.ndarray, sample_rate: int, n_mels: int) -> np.ndarray:
    """(S,) at `sample_rate` -> normalised log-mel (n_mels, F) at 100 Hz."""
    import librosa  # heavy import (numba); only when features are made

    hop = int(round(sample_rate * MEL_HOP_SECONDS))
    if mono.shape[0] < 4 * hop:  # shorter than one FFT window: pad with silence (no librosa warning)
        mono = np.pad(mono, (0, 4 * hop - mono.shape[0]))
    mel = librosa.feature.melspectrogram(
        y=mono, sr=sample_rate, n_fft=4 * hop, hop_length=hop, n_mels=n_mels, fmin=50.0,
        fmax=sample_rate / 2, center=True,
    )
    return _normalise(librosa.power_to_db(mel, ref=1.0, top_db=None)).astype(np.float32)


def check_sample_rate(sample_rate: int | float) -> int:
    """The sample rate as an int, or an AudioError saying what to do."""
    try:
        rate = int(sample_rate)
        whole = not isinstance(sample_rate, bool) and rate == sample_rate
    except (TypeError, ValueError, OverflowError, RuntimeError):
        whole = False
    if not whole:
        raise AudioError(f"the sample rate must be a whole number of Hz, got {sample_rate!r}; load the audio "
                         "with LoadAudio")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"the sample rate {rate} Hz is unusable; use audio sampled between "
                         f"{MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz (16000, 44100 or 48000 are typical)")
    return rate


def to_mono(waveform: np.ndarray | torch.Tensor, sample_rate: int, target_rate: int) -> np.ndarray:
    """(S,) or (C, S) -> mono float32 at target_rate, validated."""
    sample_rate = check_sample_rate(sample_rate)
    wav = np.asarray(waveform.detach().cpu().float() if torch.is_tensor(waveform) else waveform, dtype=np.float32)
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim != 2:
        raise AudioError(f"audio must be (channels, samples), got shape {wav.shape}; use a single clip")
    if wav.shape[0] == 0:
        raise AudioError("the audio has 0 channels; load a file that contains sound")
    if wav.shape[1] == 0:
        raise AudioError("the audio is empty (0 samples); load a file that contains sound")
    if not np.isfinite(wav).all():
        raise AudioError("the audio contains NaN or infinite samples; re-export or clean the file")
    peak = float(np.abs(wav).max())
    if peak > MAX_AMPLITUDE:
        raise AudioError(f"the audio peaks at {peak:.3g}, far outside [-1, 1]; normalise it (e.g. lower the "
                         "volume with 'Audio Adjust Volume') and try again")
    mono = wav.mean(axis=0)
    if sample_rate != target_rate:
        import librosa

        if mono.shape[0] < 2:  # too short for a resampler filter: hold the sample
            mono = np.repeat(mono, max(1, round(target_rate / sample_rate)))
        else:
            mono = librosa.resample(mono, orig_sr=sample_rate, target_sr=target_rate)
    return mono.astype(np.float32)


def audio_features(
    waveform: np.ndarray | torch.Tensor, sample_rate: int, fps: float, config: ModelConfig
) -> AudioFeatures:
    """Per-frame audio windows for a clip: see the module docstring."""
    if not (fps > 0 and math.isfinite(fps)):
        raise AudioError(f"fps must be a positive number, got {fps}; set fps to e.g. 25")
    sample_rate = check_sample_rate(sample_rate)
    n_samples = waveform.shape[-1]
    duration = n_samples / float(sample_rate)
    mono = to_mono(waveform, sample_rate, config.sample_rate)
    mel = log_mel(mono, config.sample_rate, config.audio_mels)  # (M, F)
    n_frames = frame_count(duration, fps)
    # times of the K window samples of every frame: (T, K) seconds
    centres = (np.arange(n_frames) + 0.5) / fps
    offsets = np.linspace(-config.audio_span / 2, config.audio_span / 2, config.audio_window)
    pos = (centres[:, None] + offsets[None, :]) / MEL_HOP_SECONDS  # (T, K) in mel frames
    silence = _normalise(np.array(DB_FLOOR))
    lo = np.floor(pos).astype(np.int64)
    frac = (pos - lo).astype(np.float32)[..., None]  # (T, K, 1)
    padded = np.concatenate([mel, np.full((mel.shape[0], 1), silence, np.float32)], axis=1).T  # (F + 1, M)
    last = mel.shape[1]  # index of the silence row

    def gather(idx: np.ndarray) -> np.ndarray:
        idx = np.where((idx >= 0) & (idx < last), idx, last)
        return padded[idx]  # (T, K, M)

    window = (1 - frac) * gather(lo) + frac * gather(lo + 1)
    return AudioFeatures(torch.from_numpy(window.astype(np.float32)), float(fps), duration)

"""The ground-truth rule from audio to mouth shape (what 'in sync' means in the synthetic world).

Given mono audio (resampled to 16 kHz) and a video frame rate ``fps``:

1. Frame count: T = ceil(duration * fps), duration = samples / sample_rate. Video frame k covers
   [k / fps, (k + 1) / fps); its value is read at its centre (k + 0.5) / fps.
2. Band energy: power STFT (librosa, n_fft 512, window 400 = 25 ms, hop 160 = 10 ms, centred).
   The mean-square level in the 300-3000 Hz band (Parseval-scaled, so a full-scale sine reads
   -3 dB) gives e_j in dBFS per 10 ms frame.
3. Opening: ref = 95th percentile of e_j over the clip (the loud-speech level; gain invariant);
   open_j = clip((e_j - ref + 30) / 30, 0, 1), i.e. 30 dB below ref is closed, ref is fully open;
   open_j = 0 wherever e_j < -55 dBFS (absolute silence gate; an all-silent clip gives all zeros).
4. Width: spectral centroid c_j of the band; width_j = clip(1.5 * log2(c_j / 1300), -1, 1)
   (high centroid 'ee' = wide, low 'oo' = rounded), weighted by min(1, 3 * open_j).
5. Smoothing: one-pole follower per 10 ms frame, attack 20 ms, release 60 ms (mouths open faster
   than they close), then linear interpolation at the video frame centres.

``mouth`` in 0..1 is the renderer's ``jaw`` expression, ``width`` in -1..1 its ``mouth_width``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import librosa
import numpy as np


@dataclass(frozen=True)
class LipSyncRule:
    """Parameters of the audio -> mouth rule (defaults are the documented ground truth)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    band_hz: tuple[float, float] = (300.0, 3000.0)
    range_db: float = 30.0
    ref_percentile: float = 95.0
    gate_dbfs: float = -55.0
    centroid_hz: float = 1300.0
    width_gain: float = 1.5
    attack_s: float = 0.02
    release_s: float = 0.06


def frame_count(n_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames for an audio clip: ceil(duration * fps) (tolerant to float rounding)."""
    return int(math.ceil(n_samples * fps / sample_rate - 1e-9))


def band_energy_db(wave: np.ndarray, rule: LipSyncRule = LipSyncRule()) -> tuple[np.ndarray, np.ndarray]:
    """Per-hop band level in dBFS and band spectral centroid in Hz: two (J,) arrays."""
    if len(wave) < rule.n_fft:  # too short for one analysis window: pad with silence
        wave = np.pad(wave, (0, rule.n_fft - len(wave)))
    spec = librosa.stft(wave.astype(np.float32), n_fft=rule.n_fft, hop_length=rule.hop_length,
                        win_length=rule.win_length, window="hann", center=True)
    power = np.abs(spec) ** 2  # (F, J)
    freqs = librosa.fft_frequencies(sr=rule.sample_rate, n_fft=rule.n_fft)
    band = (freqs >= rule.band_hz[0]) & (freqs <= rule.band_hz[1])
    window = librosa.filters.get_window("hann", rule.win_length, fftbins=True)
    scale = 2.0 / (rule.n_fft * float(np.sum(window**2)))  # Parseval: mean square of the frame
    band_power = power[band].sum(axis=0) * scale  # (J,)
    level = 10.0 * np.log10(band_power + 1e-12)
    centroid = (freqs[band, None] * power[band]).sum(0) / (power[band].sum(0) + 1e-20)
    return level, centroid


def _follow(x: np.ndarray, attack: float, release: float) -> np.ndarray:
    """One-pole envelope follower with separate attack / release coefficients (per step)."""
    out = np.empty_like(x)
    y = 0.0
    for i, v in enumerate(x):
        y += (attack if v > y else release) * (v - y)
        out[i] = y
    return out


def mouth_from_audio(wave: np.ndarray, sample_rate: int, fps: float,
                     rule: LipSyncRule = LipSyncRule()) -> dict[str, np.ndarray]:
    """Apply the rule: {'mouth': (T,), 'width': (T,), 'level_db': (T,)} float32, T = ceil(dur*fps)."""
    wave = np.asarray(wave, dtype=np.float32)
    assert wave.ndim == 1, "mouth_from_audio expects a mono (samples,) waveform"
    if sample_rate != rule.sample_rate:
        wave = librosa.resample(wave, orig_sr=sample_rate, target_sr=rule.sample_rate)
    n_frames = frame_count(len(wave), rule.sample_rate, fps)

    # 1. band level and centroid per 10 ms hop
    level, centroid = band_energy_db(wave, rule)
    ref = float(np.percentile(level, rule.ref_percentile))
    opening = np.clip((level - ref + rule.range_db) / rule.range_db, 0.0, 1.0)
    opening[level < rule.gate_dbfs] = 0.0
    width = np.clip(rule.width_gain * np.log2(np.maximum(centroid, 1.0) / rule.centroid_hz), -1, 1)
    width = width * np.minimum(1.0, 3.0 * opening)

    # 2. attack / release smoothing at the hop rate
    hop_s = rule.hop_length / rule.sample_rate
    attack = 1.0 - math.exp(-hop_s / rule.attack_s)
    release = 1.0 - math.exp(-hop_s / rule.release_s)
    opening = _follow(opening, attack, release)
    width = _follow(width, attack, attack)

    # 3. sample at the video frame centres
    t_hop = np.arange(len(level)) * hop_s
    t_video = (np.arange(n_frames) + 0.5) / fps
    return {
        "mouth": np.interp(t_video, t_hop, opening).astype(np.float32),
        "width": np.interp(t_video, t_hop, width).astype(np.float32),
        "level_db": np.interp(t_video, t_hop, level).astype(np.float32),
    }

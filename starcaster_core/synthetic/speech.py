"""Speech for the synthetic world: espeak-ng when available, the formant synthesiser otherwise.

``speech_audio(duration, seed, source)`` returns exactly ``duration`` seconds of float32 mono audio
at 16 kHz (trimmed, or padded with silence), deterministic for a given seed and source.
"""

from __future__ import annotations

import logging
from typing import Literal

import librosa
import numpy as np

from .espeak import espeak_available, espeak_speech
from .formant import synthesize_speech

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SpeechSource = Literal["auto", "espeak", "formant"]


def fit_duration(wave: np.ndarray, sample_rate: int, duration: float, lead: float = 0.0) -> np.ndarray:
    """Trim or zero-pad to exactly round(duration * sample_rate) samples (``lead`` s of silence first)."""
    n = int(round(duration * sample_rate))
    lead_n = min(n, int(round(lead * sample_rate)))
    out = np.zeros(n, dtype=np.float32)
    take = min(len(wave), n - lead_n)
    out[lead_n:lead_n + take] = wave[:take]
    return out


def to_mono_16k(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Any (S,), (C, S) waveform at any rate -> float32 mono (S',) at 16 kHz."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=0)
    assert wave.ndim == 1, f"expected a (samples,) or (channels, samples) waveform, got {wave.shape}"
    if sample_rate != SAMPLE_RATE:
        wave = librosa.resample(wave, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    return wave.astype(np.float32)


def speech_audio(duration: float, seed: int, source: SpeechSource = "auto") -> tuple[np.ndarray, int]:
    """``duration`` seconds of speech: (float32 waveform (S,), 16000).

    ``auto`` alternates by seed between espeak-ng (when installed) and the formant synthesiser,
    so datasets get both real phonetics and controlled prosody; espeak speech starts after a
    short random lead-in of silence.
    """
    use_espeak = source == "espeak" or (source == "auto" and espeak_available() and seed % 2 == 0)
    if use_espeak:
        rng = np.random.default_rng(seed + 7919)
        lead = float(rng.uniform(0.05, 0.4))
        wave, sr = espeak_speech(seed, duration=max(0.5, duration - lead - 0.3), sample_rate=SAMPLE_RATE)
        peak = float(np.abs(wave).max()) or 1.0
        return fit_duration(0.8 * wave / peak, sr, duration, lead=lead), sr
    wave, sr = synthesize_speech(duration, seed, sample_rate=SAMPLE_RATE)
    return fit_duration(wave, sr, duration), sr

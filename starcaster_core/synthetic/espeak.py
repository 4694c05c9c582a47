"""Real (rule-based) speech from the espeak-ng command line, when it is installed.

Random sentences come from a small built-in word list (English or German, by voice); voice, rate
and pitch are drawn from a seeded ``numpy.random.Generator``, so the result is deterministic
for a given espeak-ng build. Output: float32 mono waveform resampled to the requested rate.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile

import librosa
import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

ESPEAK_VOICES = ("en", "en-us", "en+f3", "en+m3", "en-us+f4", "de", "de+f2")

_EN_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven happy singers walk home "
    "through the garden every morning and evening we talk about music coffee rain "
    "yellow windows open slowly under bright stars people remember small stories "
    "today tomorrow maybe always never because river mountain paper orange simple "
    "building friendly quiet machine picture number letter water silver forest travel"
).split()
_DE_WORDS = (
    "der schnelle braune fuchs springt über den faulen hund am morgen gehen wir "
    "durch den garten und sprechen über musik kaffee regen gelbe fenster öffnen sich "
    "langsam unter hellen sternen menschen erinnern kleine geschichten heute morgen "
    "immer niemals fluss berg papier wasser wald reise freundlich ruhig bild zahl"
).split()


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def random_sentence(rng: np.random.Generator, n_words: int, voice: str = "en") -> str:
    """A random word sequence with a few commas (prosodic breaks) and a final full stop."""
    words = _DE_WORDS if voice.startswith("de") else _EN_WORDS
    picked = [words[int(i)] for i in rng.integers(0, len(words), size=n_words)]
    out = []
    for i, word in enumerate(picked):
        out.append(word)
        if 0 < i < n_words - 1 and rng.random() < 0.15:
            out[-1] += ","
    text = " ".join(out)
    return text[0].upper() + text[1:] + "."


def espeak_speech(
    seed: int,
    duration: float = 4.0,
    voice: str | None = None,
    sample_rate: int = 16000,
    text: str | None = None,
) -> tuple[np.ndarray, int]:
    """Speak a random sentence of about ``duration`` seconds: (float32 waveform, sample_rate).

    The natural length is returned (callers fit it to an exact duration if they need one).
    Raises ``RuntimeError`` when espeak-ng is missing or fails.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    rng = np.random.default_rng(seed)
    voice = voice or ESPEAK_VOICES[int(rng.integers(len(ESPEAK_VOICES)))]
    rate = int(rng.integers(140, 190))  # words per minute
    pitch = int(rng.integers(30, 70))
    if text is None:
        text = random_sentence(rng, max(2, int(round(duration * rate / 60.0))), voice)
    fd, path = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        cmd = [exe, "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", path, text]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.strip()}")
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
    finally:
        os.unlink(path)
    wave = wave.mean(axis=1)  # mono
    if sr != sample_rate:
        wave = librosa.resample(wave, orig_sr=sr, target_sr=sample_rate)
    logger.debug("espeak-ng voice=%s rate=%d pitch=%d text=%r", voice, rate, pitch, text)
    return wave.astype(np.float32), sample_rate

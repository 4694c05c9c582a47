"""A small source-filter (formant) speech synthesiser in numpy: speech-like babble with prosody.

1. Text-free 'utterance plan': phrases of words of CV(C) syllables drawn from a seeded
   ``numpy.random.Generator``; short pauses between words, longer ones between phrases.
2. Control tracks every 5 ms: voicing and noise amplitudes, formants F1-F3, noise colour and f0.
   Formants glide between phonemes (smoothing = coarticulation). Prosody: f0 declines over each
   phrase, stressed syllables get a pitch accent and more loudness, phrase-final syllables are
   lengthened and fall (or rise, for a 'question').
3. Sources: a glottal pulse train (Rosenberg-like pulse, differentiated for lip radiation) with
   jitter, and white noise (fricatives, bursts, aspiration).
4. Filter: short-time Fourier domain; the voiced STFT is shaped by a cascade of formant resonators,
   the noise STFT by the phoneme's noise colour; one inverse STFT gives the waveform.

Deterministic: the same seed gives the same waveform, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

SAMPLE_RATE = 16000
HOP = 80  # control / STFT hop: 5 ms at 16 kHz
N_FFT = 512

# Vowel formants (Hz), adult male (Peterson & Barney style averages).
VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
    "o": (570, 840, 2410), "u": (300, 870, 2240), "ae": (660, 1720, 2410), "er": (490, 1350, 1690),
}
# Consonants: kind, duration (s), formants (for voiced kinds) or noise centre / bandwidth (Hz).
CONSONANTS: dict[str, tuple[str, float, tuple[float, ...]]] = {
    "p": ("plosive", 0.075, (900, 1500)), "t": ("plosive", 0.070, (3800, 2500)),
    "k": ("plosive", 0.080, (2000, 1200)), "b": ("vplosive", 0.060, (900, 1500)),
    "d": ("vplosive", 0.055, (3500, 2500)), "g": ("vplosive", 0.065, (2000, 1200)),
    "s": ("fricative", 0.110, (5500, 2200)), "sh": ("fricative", 0.110, (2900, 1400)),
    "f": ("fricative", 0.090, (4000, 6000)), "h": ("aspirate", 0.070, ()),
    "m": ("nasal", 0.075, (250, 1100, 2300)), "n": ("nasal", 0.070, (250, 1600, 2600)),
    "l": ("approx", 0.065, (360, 1300, 2700)), "r": ("approx", 0.070, (420, 1300, 1600)),
    "w": ("approx", 0.060, (300, 610, 2200)), "y": ("approx", 0.060, (260, 2070, 3020)),
}
_ONSETS = list(CONSONANTS)
_CODAS = ["t", "n", "s", "m", "k", "l", "d", "r"]


@dataclass(frozen=True)
class FormantVoice:
    """Speaker traits: mean pitch (Hz), vocal-tract scale (formants x scale), tempo factor."""

    f0: float = 120.0
    tract_scale: float = 1.0
    tempo: float = 1.0
    breathiness: float = 0.03

    @classmethod
    def sample(cls, rng: np.random.Generator) -> FormantVoice:
        female = rng.random() < 0.5
        f0 = rng.uniform(175, 235) if female else rng.uniform(95, 140)
        scale = rng.uniform(1.10, 1.20) if female else rng.uniform(0.95, 1.05)
        return cls(f0=float(f0), tract_scale=float(scale), tempo=float(rng.uniform(0.85, 1.15)),
                   breathiness=float(rng.uniform(0.01, 0.06)))


@dataclass
class _Tracks:
    """Control tracks, one value per 5 ms frame (mutable while being built)."""

    voice: list[float]
    noise: list[float]
    formants: list[tuple[float, float, float]]
    noise_shape: list[tuple[float, float]]  # (centre, bandwidth); (0, 0) = shaped by formants
    f0_factor: list[float]


def _plan(rng: np.random.Generator, duration: float) -> list[list[list[tuple[str, str]]]]:
    """Phrases -> words -> syllables (onset, vowel, coda as strings, '' for none)."""
    phrases, total = [], 0.0
    while total < duration:
        words = []
        for _ in range(int(rng.integers(2, 7))):
            sylls = []
            for _ in range(int(rng.integers(1, 4))):
                onset = _ONSETS[int(rng.integers(len(_ONSETS)))] if rng.random() < 0.8 else ""
                vowel = list(VOWELS)[int(rng.integers(len(VOWELS)))]
                coda = _CODAS[int(rng.integers(len(_CODAS)))] if rng.random() < 0.35 else ""
                sylls.append((onset, vowel, coda))
                total += 0.22
            words.append(sylls)
        phrases.append(words)
        total += 0.5
    return phrases


def _tracks(rng: np.random.Generator, voice: FormantVoice, duration: float) -> _Tracks:
    """Fill the 5 ms control tracks from a random utterance plan, with prosody."""
    fr = SAMPLE_RATE / HOP  # control frames per second
    tr = _Tracks([], [], [], [], [])
    neutral = VOWELS["er"]

    def push(seconds: float, v: float, n: float, fm, shape=(0.0, 0.0), f0f: float = 1.0) -> None:
        count = max(1, int(round(seconds * fr / voice.tempo)))
        tr.voice += [v] * count
        tr.noise += [n] * count
        tr.formants += [tuple(fm)] * count
        tr.noise_shape += [tuple(shape)] * count
        tr.f0_factor += [f0f] * count

    push(rng.uniform(0.1, 0.3), 0, 0, neutral)
    for phrase in _plan(rng, duration):
        n_syll = sum(len(w) for w in phrase)
        question = rng.random() < 0.2
        k = 0
        for words in phrase:
            stress = int(rng.integers(len(words)))
            for j, (onset, vowel, coda) in enumerate(words):
                pos = k / max(1, n_syll - 1)  # 0..1 through the phrase
                final = k == n_syll - 1
                f0f = 1.08 - 0.18 * pos + (0.22 if j == stress else 0.0) * rng.uniform(0.6, 1.2)
                if final:
                    f0f *= 1.25 if question else 0.85
                loud = rng.uniform(0.7, 0.9) * (1.3 if j == stress else 1.0)
                vf = VOWELS[vowel]
                if onset:
                    _consonant(push, onset, vf, loud, f0f)
                vlen = rng.uniform(0.10, 0.16) * (1.35 if final else 1.0) * (1.2 if j == stress else 1)
                glide = 1.06 if final and question else 0.97  # pitch movement inside the vowel
                push(vlen * 0.5, loud, voice.breathiness, vf, f0f=f0f)
                push(vlen * 0.5, loud * 0.9, voice.breathiness, vf, f0f=f0f * glide)
                if coda:
                    _consonant(push, coda, vf, loud * 0.8, f0f)
                k += 1
            push(rng.uniform(0.0, 0.06), 0, 0, neutral)
        push(rng.uniform(0.25, 0.7), 0, 0, neutral)
    return tr


def _consonant(push, name: str, vowel_f, loud: float, f0f: float) -> None:
    kind, dur, par = CONSONANTS[name]
    if kind in ("plosive", "vplosive"):
        push(dur * 0.6, 0.08 * loud if kind == "vplosive" else 0.0, 0.0, (250, 900, 2300), f0f=f0f)
        push(0.012, 0.0, 1.4 * loud, vowel_f, shape=par, f0f=f0f)  # burst
        if kind == "plosive":
            push(0.03, 0.0, 0.5 * loud, vowel_f, f0f=f0f)  # aspiration through the vowel
    elif kind == "fricative":
        push(dur, 0.0, (0.9 if name != "f" else 0.35) * loud, vowel_f, shape=par, f0f=f0f)
    elif kind == "aspirate":
        push(dur, 0.0, 0.6 * loud, vowel_f, f0f=f0f)
    else:  # nasal / approximant: voiced, weaker, with their own formants
        push(dur, (0.35 if kind == "nasal" else 0.6) * loud, 0.0, par, f0f=f0f)


def _smooth(x: np.ndarray, frames: int) -> np.ndarray:
    """Moving average along axis 0 (edge padded), ``frames`` wide."""
    if frames <= 1:
        return x
    kernel = np.ones(frames) / frames
    pad = frames // 2
    xp = np.pad(x, [(pad, frames - 1 - pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    if x.ndim == 1:
        return np.convolve(xp, kernel, mode="valid")
    return np.stack([np.convolve(xp[:, i], kernel, mode="valid") for i in range(x.shape[1])], 1)


def _resonators(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Cascade of 2-pole resonators, unity gain at DC: (F,) x (N, K) -> (F, N) magnitudes."""
    f = freqs[:, None, None]  # (F, 1, 1)
    fk, bk = formants[None], bandwidths[None]  # (1, N, K)
    mag = fk**2 / np.sqrt((fk**2 - f**2) ** 2 + (bk * f) ** 2)  # (F, N, K)
    return mag.prod(axis=-1)


def synthesize_speech(duration: float, seed: int, voice: FormantVoice | None = None,
                      sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Speech-like babble, exactly ``duration`` seconds long: (float32 waveform, sample_rate)."""
    assert duration > 0, "duration must be positive"
    rng = np.random.default_rng(seed)
    voice = voice or FormantVoice.sample(rng)
    tr = _tracks(rng, voice, duration)
    n = int(round(duration * SAMPLE_RATE))
    n_ctl = n // HOP + 2

    def fit(track: list, fill) -> np.ndarray:
        arr = np.asarray(track, dtype=np.float64)[:n_ctl]
        if len(arr) < n_ctl:  # pad with silence
            pad = np.repeat(np.asarray([fill], dtype=np.float64), n_ctl - len(arr), axis=0)
            arr = np.concatenate([arr, pad.reshape((-1,) + arr.shape[1:])])
        return arr

    amp_v = _smooth(fit(tr.voice, 0.0), 3)  # (N,)
    amp_n = _smooth(fit(tr.noise, 0.0), 2)
    formants = _smooth(fit(tr.formants, VOWELS["er"]), 7) * voice.tract_scale  # (N, 3)
    shape = fit(tr.noise_shape, (0.0, 0.0))  # (N, 2)
    f0 = voice.f0 * _smooth(fit(tr.f0_factor, 1.0), 15)  # (N,)

    # 1. glottal source: phase from the per-sample f0 (with slow jitter), Rosenberg-like pulse
    t_ctl = np.arange(n_ctl) * HOP
    f0_s = np.interp(np.arange(n), t_ctl, f0) * (1 + 0.01 * _smooth(rng.standard_normal(n), 400))
    phase = np.cumsum(f0_s / SAMPLE_RATE) % 1.0
    open_q = 0.6  # open quotient: rise over 3/4 of the open phase, faster closing, then closed
    pulse = np.where(phase < open_q * 0.75, 0.5 * (1 - np.cos(np.pi * phase / (open_q * 0.75))),
                     np.where(phase < open_q, np.cos(0.5 * np.pi * (phase - 0.75 * open_q)
                                                     / (0.25 * open_q)), 0.0))
    glottal = np.diff(pulse, prepend=0.0) * 8.0
    noise = rng.standard_normal(n) * 0.3

    # 2. filter in the STFT domain, frame by frame
    Sv = librosa.stft(glottal, n_fft=N_FFT, hop_length=HOP)  # (F, frames)
    Sn = librosa.stft(noise, n_fft=N_FFT, hop_length=HOP)
    frames = Sv.shape[1]
    idx = np.minimum(np.arange(frames), n_ctl - 1)
    freqs = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=N_FFT)
    high = np.broadcast_to(np.array([3500.0, 4500.0]) * voice.tract_scale, (frames, 2))
    fk = np.concatenate([formants[idx], high], axis=1)  # (frames, 5): F1-F3 moving, F4-F5 fixed
    bw = np.broadcast_to(np.array([80.0, 110.0, 160.0, 250.0, 300.0]), (frames, 5))
    env_v = _resonators(freqs, fk, bw)  # (F, frames)
    env_tract = env_v / env_v.max(axis=0, keepdims=True)
    centre, width = shape[idx, 0], shape[idx, 1]
    band = np.exp(-(((freqs[:, None] - centre[None]) / np.maximum(width[None], 1.0)) ** 2))
    env_n = np.where(centre[None] > 0, band, env_tract)  # (F, frames)
    S = Sv * env_v * amp_v[idx] + Sn * env_n * amp_n[idx]
    wave = librosa.istft(S, hop_length=HOP, length=n)

    # 3. normalise and resample if asked
    peak = float(np.abs(wave).max())
    wave = (0.8 * wave / peak) if peak > 0 else wave
    if sample_rate != SAMPLE_RATE:
        wave = librosa.resample(wave, orig_sr=SAMPLE_RATE, target_sr=sample_rate)
    return wave.astype(np.float32), sample_rate

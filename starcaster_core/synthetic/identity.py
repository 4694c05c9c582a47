"""Identity parameters of a synthetic avatar and their fixed-size ground-truth vector.

An identity is everything about the avatar that stays fixed across a sequence: head shape, skin,
hair (colour and style), eyes, brows, nose, mouth width, shirt and the background. It is sampled
from a seeded ``torch.Generator`` (deterministic) and maps one-to-one onto a ``IDENTITY_DIM``-sized
float vector whose entries all lie in [0, 1]:

====================  ====  ===================================================
slice                 dims  meaning
====================  ====  ===================================================
0:3                   3     head width, height, depth (normalised ranges)
3:6                   3     skin rgb
6:9                   3     hair rgb
9:15                  6     hair style one-hot (see ``HAIR_STYLES``)
15:18                 3     iris rgb
18:20                 2     eye size, eye spacing (normalised)
20:22                 2     brow thickness, brow tilt (normalised)
22:24                 2     nose length, nose width (normalised)
24                    1     mouth width (normalised)
25:28                 3     shirt rgb
28:31                 3     background rgb (top of the frame)
31                    1     background gradient strength
====================  ====  ===================================================

``IdentityParams.from_vector`` inverts ``identity_vector`` (up to float rounding), so the renderer
can draw any vector, including interpolations between identities. Lip and brow colours are derived
from skin and hair, so they need no dimensions of their own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

IDENTITY_DIM = 32
HAIR_STYLES = ("short", "long", "bun", "balding", "afro", "ponytail")

# Natural-unit ranges of the scalar parameters (head radius ~1 world unit).
RANGES: dict[str, tuple[float, float]] = {
    "head_width": (0.80, 0.96),
    "head_height": (1.00, 1.16),
    "head_depth": (0.92, 1.06),
    "eye_size": (0.85, 1.20),
    "eye_spacing": (0.30, 0.40),
    "brow_thickness": (0.70, 1.40),
    "brow_tilt": (-0.30, 0.30),
    "nose_length": (0.75, 1.30),
    "nose_width": (0.75, 1.30),
    "mouth_width": (0.80, 1.20),
}

_SKIN = torch.tensor([
    [1.00, 0.87, 0.77], [0.96, 0.78, 0.64], [0.87, 0.65, 0.49],
    [0.72, 0.50, 0.35], [0.55, 0.37, 0.25], [0.38, 0.25, 0.17],
])
_HAIR = torch.tensor([
    [0.09, 0.07, 0.07], [0.26, 0.16, 0.09], [0.45, 0.30, 0.17], [0.86, 0.72, 0.45],
    [0.66, 0.28, 0.12], [0.74, 0.74, 0.76], [0.20, 0.35, 0.78], [0.86, 0.45, 0.66],
])
_HAIR_WEIGHTS = torch.tensor([3.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.5])
_IRIS = torch.tensor([
    [0.36, 0.21, 0.10], [0.16, 0.10, 0.07], [0.28, 0.50, 0.82],
    [0.28, 0.56, 0.34], [0.52, 0.56, 0.62], [0.52, 0.40, 0.18],
])

Colour = tuple[float, float, float]


def _uniform(generator: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=generator))


def _jitter(colour: torch.Tensor, generator: torch.Generator, amount: float) -> Colour:
    noisy = colour + amount * (2 * torch.rand(3, generator=generator) - 1)
    r, g, b = noisy.clamp(0.0, 1.0).tolist()
    return (r, g, b)


def _hsv(generator: torch.Generator, sat: tuple[float, float], val: tuple[float, float]) -> Colour:
    """A random colour from hue/saturation/value ranges (hue uniform)."""
    h = _uniform(generator) * 6.0
    s = _uniform(generator, *sat)
    v = _uniform(generator, *val)
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h) % 6.0
    rgb = v - v * s * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)
    r, g, b = rgb.tolist()
    return (r, g, b)


@dataclass(frozen=True)
class IdentityParams:
    """One avatar's appearance. Scalars are in natural units (see ``RANGES``), colours in 0..1."""

    head_width: float = 0.88
    head_height: float = 1.08
    head_depth: float = 1.0
    skin: Colour = (0.96, 0.78, 0.64)
    hair: Colour = (0.26, 0.16, 0.09)
    hair_style: int = 0
    iris: Colour = (0.36, 0.21, 0.10)
    eye_size: float = 1.0
    eye_spacing: float = 0.35
    brow_thickness: float = 1.0
    brow_tilt: float = 0.0
    nose_length: float = 1.0
    nose_width: float = 1.0
    mouth_width: float = 1.0
    shirt: Colour = (0.25, 0.40, 0.70)
    background: Colour = (0.80, 0.85, 0.90)
    background_gradient: float = 0.5

    def __post_init__(self) -> None:
        assert 0 <= self.hair_style < len(HAIR_STYLES), f"hair_style {self.hair_style} out of range"

    @property
    def lips(self) -> Colour:
        """Lip colour, derived from the skin (a redder, darker tone)."""
        r, g, b = self.skin
        return (min(1.0, 0.80 * r + 0.10), 0.46 * g, 0.50 * b + 0.04)

    @property
    def brows(self) -> Colour:
        r, g, b = self.hair
        return (0.7 * r, 0.7 * g, 0.7 * b)

    @classmethod
    def sample(cls, generator: torch.Generator) -> IdentityParams:
        """Draw a random identity; the same generator state always gives the same identity."""
        g = generator
        scal = {name: _uniform(g, lo, hi) for name, (lo, hi) in RANGES.items()}
        skin_pos = _uniform(g) * (len(_SKIN) - 1)
        i0 = int(skin_pos)
        i1 = min(i0 + 1, len(_SKIN) - 1)
        skin = _SKIN[i0] + (skin_pos - i0) * (_SKIN[i1] - _SKIN[i0])
        hair_idx = int(torch.multinomial(_HAIR_WEIGHTS, 1, generator=g))
        iris_idx = int(torch.randint(len(_IRIS), (), generator=g))
        style = int(torch.randint(len(HAIR_STYLES), (), generator=g))
        return cls(
            **scal,
            skin=_jitter(skin, g, 0.03),
            hair=_jitter(_HAIR[hair_idx], g, 0.05),
            hair_style=style,
            iris=_jitter(_IRIS[iris_idx], g, 0.05),
            shirt=_hsv(g, (0.3, 0.8), (0.3, 0.9)),
            background=_hsv(g, (0.05, 0.45), (0.45, 0.95)),
            background_gradient=_uniform(g),
        )

    def identity_vector(self) -> torch.Tensor:
        """The ``(IDENTITY_DIM,)`` float32 ground-truth identity embedding, entries in [0, 1]."""

        def norm(name: str) -> float:
            lo, hi = RANGES[name]
            return (getattr(self, name) - lo) / (hi - lo)

        style = [0.0] * len(HAIR_STYLES)
        style[self.hair_style] = 1.0
        values = [
            norm("head_width"), norm("head_height"), norm("head_depth"),
            *self.skin, *self.hair, *style, *self.iris,
            norm("eye_size"), norm("eye_spacing"),
            norm("brow_thickness"), norm("brow_tilt"),
            norm("nose_length"), norm("nose_width"),
            norm("mouth_width"),
            *self.shirt, *self.background, self.background_gradient,
        ]
        vec = torch.tensor(values, dtype=torch.float32)
        assert vec.shape == (IDENTITY_DIM,), f"identity vector has {vec.shape[0]} dims"
        return vec

    @classmethod
    def from_vector(cls, vector: torch.Tensor) -> IdentityParams:
        """Inverse of ``identity_vector``; values are clamped to [0, 1], style is the argmax."""
        assert vector.shape == (IDENTITY_DIM,), f"expected ({IDENTITY_DIM},), got {tuple(vector.shape)}"
        v = vector.detach().float().clamp(0.0, 1.0).tolist()

        def denorm(x: float, name: str) -> float:
            lo, hi = RANGES[name]
            return lo + x * (hi - lo)

        def rgb(i: int) -> Colour:
            return (v[i], v[i + 1], v[i + 2])

        style = int(torch.tensor(v[9:15]).argmax())
        return cls(
            head_width=denorm(v[0], "head_width"),
            head_height=denorm(v[1], "head_height"),
            head_depth=denorm(v[2], "head_depth"),
            skin=rgb(3), hair=rgb(6), hair_style=style, iris=rgb(15),
            eye_size=denorm(v[18], "eye_size"), eye_spacing=denorm(v[19], "eye_spacing"),
            brow_thickness=denorm(v[20], "brow_thickness"), brow_tilt=denorm(v[21], "brow_tilt"),
            nose_length=denorm(v[22], "nose_length"), nose_width=denorm(v[23], "nose_width"),
            mouth_width=denorm(v[24], "mouth_width"),
            shirt=rgb(25), background=rgb(28), background_gradient=v[31],
        )

    def replace(self, **changes: object) -> IdentityParams:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def sample_identity(seed: int) -> IdentityParams:
    """Convenience: the identity drawn from a fresh generator seeded with ``seed``."""
    return IdentityParams.sample(torch.Generator().manual_seed(seed))

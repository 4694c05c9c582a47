"""Identity embeddings: from a portrait, saved files, mixes and random draws.

An identity is a soft constraint: a vector in the embedding space of one model's identity
encoder, not a locked reference image. Every identity carries the id of that space, so an
embedding made by another model is refused instead of silently producing a stranger. For a
`reference_frame` model, an identity made from a portrait also carries that portrait at the
model's frame size, which the model reads beside the embedding; mixes and random draws have no
portrait (nobody has a picture of a new person) and are drawn from the embedding alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .model import STARCaster

CropMode = Literal["face", "center", "full"]
IDENTITY_FORMAT = "starcaster-identity"
MIN_SIDE = 32  # pixels: below this there is no face left to encode


class IdentityError(ValueError):
    """An identity input that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class Identity:
    embedding: torch.Tensor  # (Di,) float32
    space: str  # id of the identity-embedding space (the model that made it)
    source: str = ""  # human-readable provenance ("portrait", "mix", "random seed 3", a file)
    reference: torch.Tensor | None = None  # (3, H, W) in [-1, 1]: the portrait, for reference_frame models


def space_id(model: STARCaster) -> str:
    """Fingerprint of a model's identity space: a hash of its config and encoder head."""
    head = model.identity_encoder.head.weight.detach().float().cpu().numpy().tobytes()
    return hashlib.sha256(model.config.to_json().encode() + head).hexdigest()[:16]


def check_space(identity: Identity, model: STARCaster) -> torch.Tensor:
    """The embedding, after checking it belongs to `model`'s identity space."""
    if identity.space != space_id(model) or identity.embedding.shape != (model.config.identity_dim,):
        raise IdentityError(
            f"identity '{identity.source}' was made for another STARCaster model; make it again "
            "with this model (from a portrait or seed), or load the model that made it"
        )
    return identity.embedding


def face_crop(image: torch.Tensor, mode: CropMode, margin: float = 0.35) -> torch.Tensor:
    """A square crop of an (H, W, 3) image in [0, 1] -> (3, S, S) in [-1, 1].

    "face" finds the largest frontal face with OpenCV's Haar cascade and widens the box by
    `margin` on each side; "center" takes the central square; "full" squashes the whole image.
    """
    if mode not in ("face", "center", "full"):
        raise IdentityError(f"unknown crop {mode!r}; choose face, center or full")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise IdentityError(f"expected one RGB image (H, W, 3), got shape {tuple(image.shape)}; pass one RGB image")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise IdentityError(f"the portrait is only {w}x{h} pixels ({MIN_SIDE}x{MIN_SIDE} is the minimum); "
                            "use an image of at least 64x64, ideally 256x256 or more")
    if not torch.isfinite(image).all():
        raise IdentityError("the portrait contains NaN or infinite pixel values; load the image again")
    top, left, side_h, side_w = 0, 0, h, w
    if mode == "center":
        side_h = side_w = min(h, w)
        top, left = (h - side_h) // 2, (w - side_w) // 2
    elif mode == "face":
        x, y, bw, bh = _detect_face(image)
        side = int(max(bw, bh) * (1 + 2 * margin))
        cx, cy = x + bw // 2, y + bh // 2
        top, left = max(0, cy - side // 2), max(0, cx - side // 2)
        side_h, side_w = min(side, h - top), min(side, w - left)
    crop = image[top : top + side_h, left : left + side_w].permute(2, 0, 1)  # (3, h', w')
    return crop.float() * 2 - 1


def _detect_face(image: torch.Tensor) -> tuple[int, int, int, int]:
    try:
        import cv2
    except ImportError as e:
        raise IdentityError("face detection needs opencv-python-headless; install it or use crop 'center'") from e
    rgb = (image.float().clamp(0, 1) * 255).round().byte().cpu().numpy()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # luminance, what the cascade was trained on
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(24, 24))
    if len(faces) == 0:
        raise IdentityError("no face found in the portrait; use a clearer frontal photo, or set crop to 'center'")
    x, y, bw, bh = max(faces, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(bw), int(bh)


@torch.no_grad()
def encode_portrait(model: STARCaster, image: torch.Tensor, mode: CropMode = "face") -> Identity:
    """Identity of the person in an (H, W, 3) image in [0, 1]."""
    crop = face_crop(image, mode)
    dev = next(model.identity_encoder.parameters()).device
    emb = model.identity_encoder(crop[None].to(dev))[0].cpu()  # (Di,)
    reference = None
    if model.config.reference_frame:  # the crop at the model's frame size, as training reads it
        reference = F.interpolate(crop[None].float(), size=model.config.pixel_size, mode="bilinear", antialias=True)[0]
    return Identity(emb, space_id(model), f"portrait ({mode} crop)", reference)


def mix(a: Identity, b: Identity, weight: float) -> Identity:
    """(1 - weight) * a + weight * b, rescaled to the interpolated norm (stays in-distribution)."""
    if a.space != b.space:
        raise IdentityError("cannot mix identities made by two different STARCaster models")
    if not 0.0 <= weight <= 1.0:
        raise IdentityError(f"mix weight must be in [0, 1], got {weight}; set a weight between 0 and 1")
    lerp = torch.lerp(a.embedding, b.embedding, weight)
    norm = torch.lerp(a.embedding.norm(), b.embedding.norm(), weight)
    return Identity(F.normalize(lerp, dim=0) * norm, a.space, f"mix({a.source}, {b.source}, {weight:g})")


def random_identity(model: STARCaster, seed: int) -> Identity:
    """A new identity drawn from the model's identity prior (a diagonal Gaussian fitted to the
    identities it was trained on)."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(model.config.identity_dim, generator=g)
    emb = model.identity_mean.float().cpu() + model.identity_std.float().cpu() * z
    return Identity(emb, space_id(model), f"random seed {seed}")


def save_identity(identity: Identity, path: str | Path) -> None:
    meta = {"format": IDENTITY_FORMAT, "space": identity.space, "source": identity.source}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tensors = {"embedding": identity.embedding.contiguous().float()}
    if identity.reference is not None:
        tensors["reference"] = identity.reference.contiguous().float()
    save_file(tensors, str(path), metadata=meta)


def load_identity(path: str | Path) -> Identity:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            emb = f.get_tensor("embedding") if "embedding" in f.keys() else None
            reference = f.get_tensor("reference") if "reference" in f.keys() else None
    except (SafetensorError, OSError, ValueError) as e:
        raise IdentityError(f"{path.name} is not a readable identity file ({e}); save the identity again") from e
    if meta.get("format") != IDENTITY_FORMAT or emb is None or emb.ndim != 1:
        raise IdentityError(f"{path.name} is not a STARCaster identity file; save one with 'STARCaster Save Identity'")
    if not torch.isfinite(emb).all():
        raise IdentityError(f"{path.name} holds NaN or infinite values; save the identity again")
    if reference is not None and (reference.ndim != 3 or len(reference) != 3 or not torch.isfinite(reference).all()):
        raise IdentityError(f"{path.name} holds a damaged portrait (shape {tuple(reference.shape)}); "
                            "save the identity again")
    return Identity(emb.float(), meta.get("space", ""), meta.get("source") or path.stem,
                    None if reference is None else reference.float())

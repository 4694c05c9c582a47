"""Validation during training: the evaluator's metrics on a few world clips no run trains on.

The flow loss says little about the videos a checkpoint makes: the sampler rolls out on its own
context, where a run can lose its lip sync while the training loss keeps falling (README,
Status). So every `val_every` steps the trainer generates `val_clips` clips with the default
sampler settings, from identities, speech and camera paths of seeds VALIDATION_SEED + i (apart
from the training data and from the test clips of `python -m starcaster_core.eval --heldout`),
and logs the model's score of every metric as `val_<metric>` rows of log.jsonl. The head-pose
prior trains after the stages (untrained, it turns the head at random), so a model that has one
is validated with the world's own head turns for each clip's speech in its place (`WorldTurns`):
turns of the size a trained prior draws, which the evaluator scores with. Validated without
turns, session 22's runs read fidelity 0.54-0.61 where the evaluator, with the prior, read 0.97
(README, Status).

With `keep_best` the trainer also saves `best.safetensors`: the weights of the validation in the
run's last stage that scored best on that metric (the score swings by 0.3 in lip sync between
checkpoints 250 steps apart, so the last step is a draw from that swing).

Only world-trained pixel models are graded this way (the metrics need the world's ground truth);
for other data `val_every` must stay 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from ..eval.evaluate import EvalSettings, evaluate_clip, summarise
from ..eval.inputs import VALIDATION_SEED, Clip, heldout_clips
from ..eval.meters import Meters, load_meters
from ..eval.metrics import HIGHER_IS_BETTER, LOWER_IS_BETTER
from ..model import STARCaster
from ..synthetic.lipsync import mouth_from_audio
from ..synthetic.motion import head_motion
from ..synthetic.speech import SAMPLE_RATE, to_mono_16k


def improves(metric: str, score: float, best: float | None) -> bool:
    """Whether `score` of `metric` beats the best so far (None: nothing yet)."""
    assert metric in LOWER_IS_BETTER + HIGHER_IS_BETTER, f"no direction known for metric {metric!r}"
    if best is None:
        return True
    return score < best if metric in LOWER_IS_BETTER else score > best


class WorldTurns(nn.Module):
    """A head-pose prior's stand-in for one clip: `sample` draws the head turns the world's
    talking sequences make for that clip's speech (`synthetic.head_motion` on the lip-sync rule's
    mouth track), from the generator `generate` hands a prior."""

    def __init__(self, clip: Clip, fps: float) -> None:
        super().__init__()
        wave16 = to_mono_16k(clip.wave, clip.sample_rate)
        self.mouth = torch.from_numpy(mouth_from_audio(wave16, SAMPLE_RATE, fps)["mouth"])  # (T,)
        self.fps = fps

    def sample(self, audio: torch.Tensor, generator: torch.Generator, device: torch.device | str = "cpu"):
        """(T, K, M) audio features -> (T, 3) yaw, pitch, roll in degrees (float32, CPU)."""
        assert audio.shape[0] == self.mouth.shape[0], (
            f"{audio.shape[0]} feature frames for a speech of {self.mouth.shape[0]} frames")
        return head_motion(self.mouth, self.fps, generator)


class Validator:
    """Held-out clips and the meters, made once; `__call__` scores a model on them."""

    def __init__(self, clips: int, seconds: float, device: torch.device, config: ModelConfig) -> None:
        assert clips >= 1 and seconds > 0, "validation needs at least one clip of positive length"
        if config.space != "pixel":  # fail before training, not at the first validation
            raise ValueError(f"--val-every grades world clips, which only pixel-space models make; preset "
                             f"'{config.name}' works in a VAE latent space: set --val-every 0")
        self.clips: list[Clip] = heldout_clips(clips, seconds, first_seed=VALIDATION_SEED)
        self.turns = [WorldTurns(clip, config.fps) for clip in self.clips]  # each clip's mouth track, once
        self.meters: Meters = load_meters(device=device)
        self.device = device

    def __call__(self, model: STARCaster) -> dict[str, float]:
        """{"val_<metric>": the model's mean score} over the clips (metrics without a score are left out)."""
        was_training = model.training
        prior = model.pose_prior  # trains after the stages: the world's turns stand in for it
        model.eval()
        results = []
        try:
            for clip, turns in zip(self.clips, self.turns, strict=True):
                if prior is not None:
                    model.pose_prior = turns
                results.append(evaluate_clip(model, self.meters, clip, EvalSettings(), self.device))
        finally:
            model.pose_prior = prior
            model.train(was_training)
        return {f"val_{name}": round(score.model, 4) for name, score in summarise(results).items()
                if score.model is not None and not math.isnan(score.model)}

"""IBA: the per-sample information bottleneck (Schulz et al., ICLR 2020) at block B4.

L2I's appendix A.6 inserted the bottleneck at the output of the classifier's 4th conv
block, followed the IBA package's standard example (Adam, 10 iterations), applied the
saliency map as a filter on the mel spectrogram and inverted it with the input phase.
Captum has no information-bottleneck attribution, so all of it is written here from
the method notes (``method-vibi-slime-iba.md`` §3):

* ``fit`` estimates the per-element mean and standard deviation of the B4 features
  (``(C, T', F')``) on training clips (a Welford estimate over at most
  ``estimate_samples`` clips), the "active" elements (non-zero on more than 1 % of
  clips) and whether the features are non-negative (B4 ends with a ReLU; IBA's
  ``relu=True`` then clamps the noisy features). It learns statistics only.
* ``explain`` injects ``Z = lam * R + (1 - lam) * eps``, ``eps ~ N(mu, sigma^2)``,
  inside the classifier's forward with a forward hook on the module that produces the
  B4 tap; ``lam = smooth(sigmoid(alpha))`` with ``alpha`` initialised to 5 and a
  per-channel Gaussian smoothing (sigma 1, 5x5 kernel, reflection padding).
  ``alpha`` is optimised by Adam (lr 1) for 10 steps on a batch of 10 noise draws of
  the clip, minimising ``L_model + beta * mean(capacity)`` with ``beta = 10``. Taking
  the *mean* over the ``k = C * T' * F'`` elements of a clip is what the IBA code does,
  i.e. the paper's ``beta / k``. ``L_model`` is ``-log softmax_c`` (multiclass) or
  ``-log sigmoid(logit_c)`` (multilabel: the sigmoid probability of the class).
  The capacity is the KL divergence ``KL[P(Z|R) || N(mu, sigma^2)]`` per element;
  as in the IBA code the map is read from the last forward pass (before the 10th
  update) and zero on inactive elements.
* The saliency is the capacity summed over channels, in bits, on the B4 grid
  ``(T', F')``; it is upsampled bilinearly to the log-mel grid ``(T, 128)`` and taken
  to the linear STFT through the mel filterbank: every STFT bin gets the average of
  the mel saliencies weighted by the filters that cover it,
  ``M_lin = (W^T S) / (W^T 1)`` with ``W = front_end.mel_basis`` (the magnitude mel,
  power 1, of the front end). Dividing by ``W^T 1`` matters: Slaney filters are
  area-normalised, so raw ``W^T S`` would dim high frequencies for a flat map. The
  result is min-max normalised per clip to ``[0, 1]`` and is the mask; the host
  resynthesises ``mask * X`` with the input phase. (L2I went mel filter -> NNLS STFT
  estimate -> inversion; masking the STFT directly avoids the NNLS error and keeps
  the mask contract every metric reads.)

``relevance`` is the flattened B4-grid saliency in bits, ``(B, T' * F')`` row-major
(time, then the 16 frequency rows of B4); ``extra["information_bits"]`` is its sum.

Locating B4: the hook goes on ``classifier.tap_modules["B4"]`` if the classifier
exposes that mapping, else on ``classifier.b4`` (``kumar``, :mod:`l2i_bench.plugins.classifiers.kumar`),
else on the one sub-module whose output *is* the ``B4`` tensor of
``forward_with_taps``; the choice is verified with one probe forward (the module must
produce the tap and run once per forward, or the noise would be injected twice).

Cost per clip: ``steps`` (10) forward passes and 10 backward passes (from the logits
down to B4 only; the classifier's weights are frozen during the optimisation) on a
batch of ``draws`` (10) copies, i.e. 100 forward + 100 partial backward sample
passes; rows are optimised together ``rows_per_pass`` clips at a time (Adam is
element-wise, so this equals optimising each clip alone). Training: one forward pass
per training clip (at most ``estimate_samples``). Measured on a busy 2-core CPU, 5 s
clip, KumarCNN width 0.125: ~5.0 s per clip (10 x [forward + full backward to the
input] on the same batch of 10 took 12.7 s: the partial backward is cheaper), and
~0.1 s per training clip for ``fit``.

Options (``--option iba.KEY=VALUE``): ``beta`` (10), ``steps`` (10), ``lr`` (1.0),
``draws`` (10), ``initial_alpha`` (5.0), ``smooth_sigma`` (1.0), ``min_std`` (0.01),
``estimate_samples`` (10000), ``rows_per_pass`` (8), ``tap`` ("B4").
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from l2i_bench import hookimpl
from l2i_bench.errors import BenchError
from l2i_bench.types import (
    AudioBatch,
    BatchSource,
    ClassifierModel,
    Explainer,
    ExplainerContext,
    Explanation,
    Option,
    late_taps_of,
)

ACTIVE_THRESHOLD = 0.01
"""An element is active if non-zero on more than this share of training clips (IBA)."""


# --------------------------------------------------------------- B4 statistics


class FeatureStats:
    """Streaming per-element mean/variance (Chan et al.'s parallel Welford update, in
    float64 so that thousands of clips do not lose precision), the share of clips on
    which each element is non-zero, and the smallest value seen."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None
        self.nonzero: torch.Tensor | None = None
        self.minimum = math.inf

    def update(self, features: torch.Tensor) -> None:
        x = features.detach().double()
        n_b = x.shape[0]
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        nonzero_b = (x != 0).double().sum(0)
        if self.mean is None:
            self.mean, self.m2, self.nonzero = mean_b, m2_b, nonzero_b
        else:
            if x.shape[1:] != self.mean.shape:
                raise BenchError(
                    f"iba: B4 features changed shape within the training split "
                    f"({tuple(self.mean.shape)} then {tuple(x.shape[1:])})",
                    "give every clip of a dataset the same length (the dataset plugin "
                    "should pad or crop to clip_seconds)",
                )
            total = self.count + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / total)
            self.m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / total)
            self.nonzero = self.nonzero + nonzero_b
        self.count += n_b
        self.minimum = min(self.minimum, float(x.min()))

    def std(self) -> torch.Tensor:
        assert self.m2 is not None
        return torch.sqrt(self.m2 / max(self.count - 1, 1))


# ------------------------------------------------------------------ the hook


def find_tap_module(classifier: ClassifierModel, tap: str, probe: torch.Tensor) -> nn.Module:
    """The sub-module whose forward output is the tap ``tap`` (see module docstring).

    One probe forward records, for every sub-module, how often it runs and whether
    its output is the very tensor ``forward_with_taps`` returns as the tap.
    """
    if not isinstance(classifier, nn.Module):
        raise BenchError(
            f"iba needs a torch.nn.Module classifier to hook, got {type(classifier).__name__}",
            "use the benchmark's KumarCNN classifier or another nn.Module",
        )
    calls: dict[int, int] = {}
    outputs: dict[int, torch.Tensor] = {}  # the tensors themselves: ids of freed ones recur
    handles = []

    def recorder(module: nn.Module, _inputs: Any, output: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        if isinstance(output, torch.Tensor):
            outputs[id(module)] = output

    named = list(classifier.named_modules())
    for _, module in named[1:]:
        handles.append(module.register_forward_hook(recorder))
    try:
        with torch.no_grad():
            _, taps = classifier.forward_with_taps(probe)
    finally:
        for handle in handles:
            handle.remove()
    if tap not in taps:
        raise BenchError(
            f"iba: the classifier has no tap {tap!r} (it has {sorted(taps)})",
            f"pass --option iba.tap=NAME with one of {sorted(taps)}",
        )
    target = taps[tap]

    def produces(module: Any) -> bool:
        return (
            isinstance(module, nn.Module)
            and outputs.get(id(module)) is target
            and calls.get(id(module)) == 1
        )

    declared = getattr(classifier, "tap_modules", None)
    candidates = []
    if isinstance(declared, dict) and tap in declared:
        candidates.append(declared[tap])
    candidates.append(getattr(classifier, tap.lower(), None))
    candidates.extend(module for _, module in named[1:])
    for module in candidates:
        if produces(module):
            return module
    raise BenchError(
        f"iba cannot find the module of {type(classifier).__name__} that produces the "
        f"{tap} tap (no sub-module outputs that tensor exactly once per forward)",
        f"expose it as `tap_modules = {{'{tap}': module}}` on the classifier, an nn.Module "
        f"called once per forward whose output is the {tap} tensor of forward_with_taps",
    )


def smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-channel 2-D Gaussian smoothing of ``(N, C, H, W)`` (kernel ``2*round(2s)+1``,
    reflection padding, as IBA's ``SpatialGaussianKernel``); identity for ``s <= 0``."""
    if sigma <= 0:
        return x
    radius = round(2 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    mode_h = "reflect" if h > radius else "replicate"
    mode_w = "reflect" if w > radius else "replicate"
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode=mode_h), kernel.view(1, 1, -1, 1))
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode=mode_w), kernel.view(1, 1, 1, -1))
    return y.reshape(n, c, h, w)


def capacity_nats(
    features: torch.Tensor, lam: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """``KL[N(lam r + (1-lam) mu, (1-lam)^2 s^2) || N(mu, s^2)]`` per element, in nats:
    ``-1/2 (1 + log (1-lam)^2 - (lam r~)^2 - (1-lam)^2)`` with ``r~ = (R - mu) / s``."""
    r_norm = (features - mean) / std
    one_minus = 1.0 - lam
    return -0.5 * (1.0 + torch.log(one_minus**2 + 1e-12) - (lam * r_norm) ** 2 - one_minus**2)


class Bottleneck:
    """The state of one optimisation: ``alpha`` per (clip, element) and the hook that
    replaces the B4 output of ``rows * draws`` inputs by the noisy ``Z``."""

    def __init__(
        self,
        rows: int,
        draws: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        active: torch.Tensor,
        relu: bool,
        sigma: float,
        initial_alpha: float,
        generator: torch.Generator,
    ) -> None:
        self.rows, self.draws = rows, draws
        self.mean, self.std, self.active = mean, std, active
        self.relu, self.sigma, self.generator = relu, sigma, generator
        self.alpha = torch.full(
            (rows, *mean.shape), float(initial_alpha), device=mean.device, requires_grad=True
        )
        self.capacity: torch.Tensor | None = None  # (rows, draws, C, H, W), nats

    def hook(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if output.shape[1:] != self.mean.shape:
            raise BenchError(
                f"iba: B4 features have shape {tuple(output.shape[1:])} but the statistics "
                f"were fitted on {tuple(self.mean.shape)}",
                "explain clips of the training clips' length, or refit iba (delete its cache file)",
            )
        lam = smooth(torch.sigmoid(self.alpha), self.sigma)
        lam = lam.repeat_interleave(self.draws, dim=0)
        noise = torch.randn(
            output.shape, generator=self.generator, device=output.device, dtype=output.dtype
        )
        eps = self.mean + self.std * noise
        z = (lam * output + (1.0 - lam) * eps) * self.active
        if self.relu:
            z = z.clamp_min(0.0)
        cap = capacity_nats(output, lam, self.mean, self.std) * self.active
        self.capacity = cap.view(self.rows, self.draws, *self.mean.shape)
        return z


# --------------------------------------------------------------- mel -> STFT


def saliency_to_mask(
    saliency: torch.Tensor, num_frames: int, mel_to_linear: torch.Tensor
) -> torch.Tensor:
    """B4-grid saliency ``(B, T', F')`` -> STFT mask ``(B, F, T)`` in ``[0, 1]``."""
    num_mels = mel_to_linear.shape[1]
    mel = F.interpolate(
        saliency[:, None], size=(num_frames, num_mels), mode="bilinear", align_corners=False
    )[:, 0].clamp_min(0.0)  # (B, T, M)
    linear = torch.matmul(mel_to_linear, mel.transpose(1, 2))  # (B, F, T)
    low = linear.amin(dim=(1, 2), keepdim=True)
    high = linear.amax(dim=(1, 2), keepdim=True)
    return ((linear - low) / (high - low).clamp_min(1e-12)).clamp(0.0, 1.0)


# ------------------------------------------------------------------ explainer


class IbaExplainer(Explainer):
    """Per-sample information bottleneck at B4, saliency mapped to an STFT mask."""

    name = "iba"
    family = "paper"
    description = "IBA: per-sample information bottleneck at B4 (Schulz et al. 2020)"
    version = "1"
    unit = "time-frequency bin"
    needs_training = True
    has_surrogate = False
    passes = (
        "{draws} x {steps} forward + backward passes to B4 ({steps} Adam steps on {draws} "
        "noise draws)"
    )
    options: ClassVar[Mapping[str, Option]] = {
        "beta": Option(
            10.0, "weight of the mean capacity (KL per B4 element, nats) against the class loss"
        ),
        "steps": Option(10, "Adam steps on the bottleneck's alpha per clip (count)"),
        "lr": Option(1.0, "Adam learning rate of alpha"),
        "draws": Option(10, "noise draws of the clip per step, batched (count)"),
        "initial_alpha": Option(5.0, "initial alpha (logit of the bottleneck's keep share lambda)"),
        "smooth_sigma": Option(
            1.0, "Gaussian smoothing of lambda, standard deviation in B4 grid cells (0: none)"
        ),
        "min_std": Option(
            0.01, "floor of the per-element noise standard deviation (B4 feature units)"
        ),
        "estimate_samples": Option(
            10_000, "most training clips read to estimate the B4 statistics (count, >= 2)"
        ),
        "batch_size": Option(16, "clips per classifier pass when estimating the statistics"),
        "rows_per_pass": Option(8, "clips optimised together (memory only, same result)"),
        "tap": Option(
            "late",
            "classifier tap that carries the bottleneck; 'late': the earliest of its three "
            "late taps (B4 on kumar)",
        ),
    }

    def __init__(self, context: ExplainerContext) -> None:
        super().__init__(context)
        self.stats: dict[str, Any] = {}
        self._module: nn.Module | None = None

    # ------------------------------------------------------------- settings
    def _tap(self) -> str:
        tap = str(self.context.option("tap")).strip()
        if tap == "late":
            return late_taps_of(self.context.classifier, self.name)[0]
        return tap

    # ------------------------------------------------------------------ fit
    def fit(self, train: BatchSource, valid: BatchSource) -> dict[str, Any]:
        """Estimate the B4 feature statistics on (at most ``estimate_samples``)
        training clips; validation is not needed (nothing is selected)."""
        limit = int(self.context.option("estimate_samples"))
        batch_size = int(self.context.option("batch_size"))
        if limit < 2 or batch_size < 1:
            raise BenchError(
                "iba options estimate_samples must be >= 2 and batch_size >= 1",
                "fix --option iba.estimate_samples / iba.batch_size",
            )
        if len(train) < 2:
            raise BenchError(
                f"iba needs at least 2 training clips to estimate B4 statistics, got {len(train)}",
                "check the dataset's training split",
            )
        tap = self._tap()
        stats = FeatureStats()
        total = min(limit, len(train))
        bar = tqdm(
            total=total,
            desc="iba: B4 statistics",
            unit="clip",
            disable=not self.context.show_progress,
            leave=False,
        )
        with torch.no_grad():
            for batch in train.batches(batch_size, shuffle=True, seed=self.context.seed):
                take = min(len(batch), total - stats.count)
                if take <= 0:
                    break
                _, taps = self.context.classifier.forward_with_taps(batch.logmel[:take])
                stats.update(taps[tap])
                bar.update(take)
        bar.close()
        assert stats.mean is not None and stats.nonzero is not None
        active = (stats.nonzero / stats.count > ACTIVE_THRESHOLD).float()
        self.stats = {
            "mean": stats.mean.float(),
            "std": stats.std().float(),
            "active": active,
            "relu": torch.tensor(stats.minimum >= 0.0),
            "count": torch.tensor(stats.count),
        }
        self._to_device()
        return {
            "b4_clips": stats.count,
            "b4_shape": list(stats.mean.shape),
            "active_fraction": float(active.mean()),
            "relu_clamp": bool(stats.minimum >= 0.0),
            "few_clips_warning": stats.count < 1000,
        }

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().cpu() for k, v in self.stats.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"mean", "std", "active", "relu", "count"} - set(state)
        if missing:
            raise BenchError(
                f"iba cached state lacks {sorted(missing)}",
                "delete the iba cache file so that iba refits",
            )
        self.stats = dict(state)
        self._to_device()

    def _to_device(self) -> None:
        device = self.context.device
        self.stats = {k: v.to(device) for k, v in self.stats.items()}

    # -------------------------------------------------------------- explain
    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        if not self.stats:
            raise BenchError(
                "iba has no B4 feature statistics (fit was not run)",
                "call fit(train, valid) first (the runner does this for needs_training)",
            )
        classifier = self.context.classifier
        rows = len(batch)
        num_freqs, num_frames = batch.spec.shape[1:]
        device = batch.logmel.device
        per_pass = max(1, int(self.context.option("rows_per_pass")))

        params = list(classifier.parameters()) if isinstance(classifier, nn.Module) else []
        flags = [p.requires_grad for p in params]
        saliencies = []
        try:
            for p in params:
                p.requires_grad_(False)  # only alpha is optimised; restored below
            with torch.inference_mode(False), torch.enable_grad():
                logmel = batch.logmel.detach().clone()
                if self._module is None:
                    self._module = find_tap_module(classifier, self._tap(), logmel[:1])
                for start in tqdm(
                    range(0, rows, per_pass),
                    desc="iba",
                    unit="pass",
                    disable=not self.context.show_progress or rows <= per_pass,
                    leave=False,
                ):
                    stop = min(rows, start + per_pass)
                    saliencies.append(
                        self._optimise(
                            logmel[start:stop],
                            classes[start:stop].to(device),
                            batch.clip_ids[start:stop],
                        )
                    )
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)
        saliency = torch.cat(saliencies)  # (B, T', F') bits
        mask = saliency_to_mask(saliency, num_frames, self.context.front_end.mel_to_linear)
        assert mask.shape == (rows, num_freqs, num_frames)
        return Explanation(
            mask=mask,
            relevance=saliency.flatten(1),
            extra={"information_bits": saliency.sum(dim=(1, 2)).cpu()},
        )

    def _optimise(
        self, logmel: torch.Tensor, classes: torch.Tensor, clip_ids: list[str]
    ) -> torch.Tensor:
        """Run the bottleneck optimisation for a few clips; saliency ``(R, T', F')``."""
        classifier = self.context.classifier
        draws = int(self.context.option("draws"))
        steps = int(self.context.option("steps"))
        beta = float(self.context.option("beta"))
        if draws < 1 or steps < 1:
            raise BenchError("iba options draws and steps must be >= 1", "fix --option iba.*")
        rows = logmel.shape[0]
        seed = self.context.seed * 1_000_003 + zlib.crc32("|".join(clip_ids).encode())
        generator = torch.Generator(device=logmel.device).manual_seed(seed % (2**63))
        std = self.stats["std"].clamp_min(float(self.context.option("min_std")))
        bottleneck = Bottleneck(
            rows,
            draws,
            self.stats["mean"],
            std,
            self.stats["active"],
            bool(self.stats["relu"]),
            float(self.context.option("smooth_sigma")),
            float(self.context.option("initial_alpha")),
            generator,
        )
        optimiser = torch.optim.Adam([bottleneck.alpha], lr=float(self.context.option("lr")))
        inputs = logmel.repeat_interleave(draws, dim=0)
        targets = classes.long().repeat_interleave(draws)
        assert self._module is not None
        handle = self._module.register_forward_hook(bottleneck.hook)
        try:
            for _ in range(steps):
                logits = classifier(inputs)
                chosen = logits.gather(1, targets[:, None])[:, 0]
                if classifier.task == "multiclass":
                    model_loss = -(chosen - torch.logsumexp(logits, dim=1))
                else:
                    model_loss = -F.logsigmoid(chosen)
                assert bottleneck.capacity is not None
                info = bottleneck.capacity.flatten(2).mean(dim=2)  # (rows, draws)
                per_clip = model_loss.view(rows, draws).mean(1) + beta * info.mean(1)
                (grad,) = torch.autograd.grad(per_clip.sum(), [bottleneck.alpha])
                optimiser.zero_grad(set_to_none=True)
                bottleneck.alpha.grad = grad
                optimiser.step()
        finally:
            handle.remove()
        assert bottleneck.capacity is not None
        capacity = bottleneck.capacity.detach().mean(1)  # (rows, C, T', F')
        return capacity.sum(1) / math.log(2.0)


@hookimpl
def register_explainers(register):
    register(IbaExplainer)

"""The one adapter between gradient attribution methods and the suite's explainers.

Method: every attribution explainer computes a map ``A`` over the classifier's own input,
the log-mel spectrogram ``(B, 1, T, M)`` in dB, for the explained class's logit (one
logit per row, multiclass or multilabel alike). The methods themselves are captum's
(``captum.attr``), one module per method as captum keeps them (``saliency``,
``integrated_gradients``, ``smoothgrad``, ``gradient_shap``, ``occlusion``); Grad-CAM
reads the classifier's late-layer taps through the classifier contract
(``forward_with_taps``) instead of naming its modules (``gradcam``).

What is ours, and the same for all of them (:func:`attribution_to_explanation`):
- **Mask rule.** The positive part of ``A`` (evidence *for* the class), carried from the
  mel grid to STFT bins by the suite's one mapping (:attr:`FrontEnd.mel_to_linear`),
  divided by its maximum per clip: a gain in [0, 1] on ``|X|``, so the interpretation
  keeps each bin in proportion to its evidence and is listenable like every other
  explainer's. A clip with no positive evidence gets an all-zero mask (silence).
- **Relevance** over mel bands (``(B, M)``): the positive attribution summed over time.
- **Baselines.** Integrated gradients walks from the clip's silence floor, the dB value
  silence takes after the front end's 80 dB ``top_db`` clipping (peak - 80 dB), so
  "absent" means silent, not 0 dB (which, at the suite's levels, is loud). Occlusion
  replaces one patch inside an otherwise intact clip, and a patch of digital silence in
  a recording that has a noise floor everywhere else is a sound the classifier never
  heard: it answers the hole, not the missing content (measured on synth's overlap set,
  the localisation AUROC of occlusion was 0.318 with silence patches, below chance, and
  0.612 with floor patches). Its default baseline is therefore the suite's ``floor``
  removal (:func:`l2i_bench.perturb.baseline_magnitude`) on the log-mel grid
  (:func:`noise_floor_baseline`), the operator faithfulness uses for the same reason.

Cost: stated per method as forward and backward passes per clip (README's explainer
table); every method runs batched.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from l2i_bench import perturb
from l2i_bench.audio import TOP_DB
from l2i_bench.types import AudioBatch, Explainer, Explanation


def silence_floor(logmel: torch.Tensor, floor_db: float = TOP_DB) -> torch.Tensor:
    """Per-clip baseline ``(B, 1, T, M)``: every bin at the clip's floor, ``floor_db``
    below its peak (the front end's ``floor_db``: 80 dB for Kumar's and CNN14's)."""
    peak = logmel.amax(dim=(1, 2, 3), keepdim=True)
    return (peak - floor_db).expand_as(logmel).contiguous()


def noise_floor_baseline(logmel: torch.Tensor) -> torch.Tensor:
    """Per-clip baseline ``(B, 1, T, M)``: every bin at ``min(x, floor of its mel band)``,
    the band's 10th percentile over the frames: the suite's ``floor`` removal
    (:func:`l2i_bench.perturb.baseline_magnitude`) applied to the classifier's input, in
    dB (the quantile and the minimum commute with the logarithm)."""
    by_band = logmel.transpose(-1, -2)  # (B, 1, M, T): the operator's frequency x time
    return perturb.baseline_magnitude(by_band, perturb.FLOOR).transpose(-1, -2).contiguous()


def attribution_to_explanation(attribution: torch.Tensor, front_end) -> Explanation:
    """The suite's rule from an attribution map to a mask and a relevance (module
    docstring). ``attribution`` is ``(B, 1, T, M)`` on the log-mel grid."""
    positive = attribution.detach().float().clamp_min(0.0)[:, 0]  # (B, T, M)
    linear = front_end.mel_map_to_linear(positive)  # (B, F, T)
    peak = linear.amax(dim=(1, 2), keepdim=True)
    mask = torch.where(peak > 0, linear / peak.clamp_min(1e-30), torch.zeros_like(linear))
    return Explanation(mask=mask.clamp(0.0, 1.0), relevance=positive.sum(dim=1))


class AttributionExplainer(Explainer):
    """An explainer from one attribution method; subclasses implement :meth:`attribute`
    and state their cost in ``passes``."""

    unit = "mel band"
    family = "attribution"
    passes: ClassVar[str] = ""
    """Forward and backward passes per clip, for the README's explainer table."""

    def logits(self, logmel: torch.Tensor) -> torch.Tensor:
        """The classifier's logits: what captum differentiates."""
        return self.context.classifier(logmel)

    def attribute(self, logmel: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The attribution ``(B, 1, T, M)`` of each row's class logit."""
        raise NotImplementedError

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        device = self.context.device
        logmel = batch.logmel.to(device).detach()
        with torch.enable_grad():
            attribution = self.attribute(logmel, classes.to(device).long())
        return attribution_to_explanation(attribution, self.context.front_end)

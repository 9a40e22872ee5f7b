"""Metric plugins on a real small Evaluation: a random-init KumarCNN (width 0.125),
1 s synthetic clips through the shared front end, made-up explanations whose effect is
known (all-ones mask = the clip itself, all-zeros mask = silence)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from toy_audio import FE, FRAMES, LENGTH, C, N, clips

from l2i_bench import perturb
from l2i_bench.plugins import metrics as metric_plugins
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.plugins.metrics import curves
from l2i_bench.types import (
    AudioBatch,
    ConditionSet,
    Direction,
    Evaluation,
    ExplanationSet,
    MaskDomain,
    Metric,
    Task,
    Timing,
)


def audio_batch(wave: torch.Tensor, targets: torch.Tensor) -> AudioBatch:
    spec = FE.stft(wave)
    return AudioBatch(
        [f"c{i}" for i in range(len(wave))],
        wave,
        spec,
        FE.logmel_from_magnitude(spec.abs()),
        targets,
    )


@pytest.fixture(scope="module")
def models():
    """Random-init classifiers made input-sensitive: a fresh network's BatchNorm running
    statistics (mean 0, var 1) leave it answering the same logits for every clip, so the
    statistics are first estimated on a few clips, and the last layer is scaled so that
    probabilities move by more than a rounding error."""
    torch.manual_seed(0)
    calibration = FE.logmel(torch.cat([clips(1), clips(3), torch.zeros(1, LENGTH)]))
    out = {}
    for task in Task:
        model = KumarCNN(C, task, width=0.125)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # cumulative average over the calibration batch
        model.train()
        with torch.no_grad():
            model(calibration)
            model.fc.weight.mul_(10.0)
        out[task] = model.eval()
    return out


def probs_of(model, logmel: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.probabilities(model(logmel))


def make_eval(
    model,
    *,
    mask_value: float | None = None,
    mask: torch.Tensor | None = None,
    surrogate: torch.Tensor | None = None,
    relevance: torch.Tensor | None = None,
    conditions: dict | None = None,
    thresholds: torch.Tensor | None = None,
    n_rows: int = N,
) -> Evaluation:
    task = model.task
    wave = clips(1)
    if task == Task.MULTICLASS:
        targets = torch.nn.functional.one_hot(torch.arange(N) % C, C).float()
    else:
        targets = (torch.rand(N, C, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    test = audio_batch(wave, targets)
    with torch.no_grad():
        logits = model(test.logmel)
    rows = torch.arange(n_rows)  # explain the classifier's top-1 of the first n_rows clips
    classes = logits[rows].argmax(dim=1)
    if mask is None:
        mask = torch.full((len(rows), *test.spec.shape[1:]), float(mask_value))
    explanations = ExplanationSet(
        rows=rows,
        classes=classes,
        mask=mask,
        relevance=relevance,
        waveform=FE.apply_mask(test.spec[rows], mask, LENGTH),
    )
    return Evaluation(
        dataset="toy",
        fold="1",
        task=task,
        class_names=[f"k{i}" for i in range(C)],
        explainer_name="made_up",
        explainer_has_surrogate=surrogate is not None,
        classifier=model,
        front_end=FE,
        device=torch.device("cpu"),
        seed=0,
        test=test,
        classifier_logits=logits,
        decision_thresholds=thresholds,
        surrogate_logits=surrogate,
        explanations=explanations,
        conditions=conditions or {},
        timing=Timing(1.5, [10.0, 12.0, 11.0, 30.0, 9.0, 10.5, 8.0, 40.0][:n_rows], 123.0, "cpu"),
    )


def published(m: Metric, ev: Evaluation) -> dict[str, float]:
    """A metric's published numbers: its declared columns, each a float (the summary of
    its rows where it returns :class:`RowValues`)."""
    declared = {c.name for c in m.columns}
    return {k: float(v) for k, v in m.compute(ev).items() if k in declared}


def metric(cls_name: str) -> Metric:
    return next(m for m in metric_plugins.METRICS if m.__name__ == cls_name)()


# ------------------------------------------------------------------ contract


def test_hook_registers_every_metric_with_unique_named_columns():
    registered = []
    metric_plugins.register_metrics(registered.append)
    assert registered and all(issubclass(m, Metric) for m in registered)
    assert len({m.name for m in registered}) == len(registered)
    columns = [c for m in registered for c in m.columns]
    assert len({c.name for c in columns}) == len(columns)
    for col in columns:
        assert col.variant and isinstance(col.direction, Direction)


@pytest.mark.parametrize("task", list(Task))
def test_every_applicable_metric_returns_its_declared_columns(models, task):
    model = models[task]
    ev = make_eval(
        model,
        mask_value=0.5,
        surrogate=torch.randn(N, C),
        relevance=torch.rand(2, 7),
        conditions={"overlap": make_condition(model)},
        n_rows=2,
    )
    applicable = 0
    for cls in metric_plugins.METRICS:
        m = cls()
        reason = m.not_applicable(ev)
        if task not in cls.tasks:
            assert reason
            continue
        if cls.name == "sanity":  # needs the runner's refit of the explainer
            assert "refit" in reason
            continue
        assert reason is None, f"{cls.name}: {reason}"
        values = published(m, ev)
        assert set(values) == {c.name for c in cls.columns}, cls.name
        finite = {k: v for k, v in values.items() if not k.endswith("_noise")}
        assert all(math.isfinite(v) for v in finite.values()), (cls.name, values)
        applicable += 1
    assert applicable >= 9


def test_reasons_when_explainer_or_dataset_lacks_what_a_metric_needs(models):
    ev = make_eval(models[Task.MULTICLASS], mask_value=0.5)
    assert "surrogate" in metric("FidelityTopK").not_applicable(ev)
    assert "relevance" in metric("RelevanceComplexity").not_applicable(ev)
    assert "stems" in metric("GroundTruthLocalisation").not_applicable(ev)
    assert metric("FidelityAUPRC").not_applicable(ev)  # multilabel only
    ev.timing = Timing(0.0, [], 0.0, "cpu")
    assert "timings" in metric("Timing").not_applicable(ev)


# ------------------------------------------------- masks with a known effect


def test_all_ones_mask_keeps_the_clip_and_removes_everything(models):
    model = models[Task.MULTICLASS]
    ev = make_eval(model, mask_value=1.0)
    # masked-in M*X is the clip itself (up to the ISTFT/STFT round trip)
    lmac = published(metric("LMac"), ev)
    assert lmac["lmac_ad"] < 0.5 and lmac["lmac_ag"] < 0.5
    assert published(metric("LMacMulticlass"), ev)["lmac_fid_in"] == 1.0
    # masked-out (1-M)*X is silence (the L2I code's operator), or each band's floor
    c = ev.explanations.classes
    with torch.no_grad():
        f = model(ev.test.logmel)[torch.arange(N), c]
    p = probs_of(model, ev.test.logmel)[torch.arange(N), c]
    p_silent = probs_of(model, FE.logmel(torch.zeros(1, LENGTH)))[0, c]
    mag = ev.test.spec.abs()
    floor = torch.polar(torch.minimum(mag, _band_floor(mag)), torch.angle(ev.test.spec))
    floor_logmel = FE.logmel(FE.istft(floor, LENGTH))
    with torch.no_grad():
        f_floor = model(floor_logmel)[torch.arange(N), c]
    p_floor = probs_of(model, floor_logmel)[torch.arange(N), c]
    ff = published(metric("Faithfulness"), ev)
    assert ff["ff_silence_prob_drop"] == pytest.approx(np.median((p - p_silent).numpy()), abs=1e-5)
    assert ff["ff_prob_drop"] == pytest.approx(np.median((p - p_floor).numpy()), abs=3e-4)
    # that tolerance cannot let removal to silence pass for removal to the floor
    assert abs(np.median((p - p_floor).numpy()) - np.median((p - p_silent).numpy())) > 3e-3
    assert ff["ff_logit_drop"] == pytest.approx(np.median((f - f_floor).numpy()), abs=3e-3)
    assert abs(ff["ff_logit_drop"]) > 0.05  # the check above is not 0 == 0
    # removing every bin removes the same energy at any placement: control = explanation
    assert ff["ff_prob_drop_minus_random"] == pytest.approx(0.0, abs=1e-6)


def test_all_zeros_mask_removes_nothing(models):
    ev = make_eval(models[Task.MULTICLASS], mask_value=0.0)
    ff = published(metric("Faithfulness"), ev)
    assert abs(ff["ff_prob_drop"]) < 1e-3 and abs(ff["ff_logit_drop"]) < 1e-2


@pytest.mark.parametrize("task", list(Task))
def test_all_zeros_mask_in_scores_like_silence(models, task):
    model = models[task]
    ev = make_eval(model, mask_value=0.0)
    c = ev.explanations.classes
    pc = probs_of(model, ev.test.logmel)[torch.arange(N), c]
    oc = probs_of(model, FE.logmel(torch.zeros(1, LENGTH)))[0][c]
    expected_ad = 100 * torch.mean(torch.relu(pc - oc) / pc).item()
    expected_ai = 100 * torch.mean((pc < oc).float()).item()
    got = published(metric("LMac"), ev)
    assert got["lmac_ad"] == pytest.approx(expected_ad, rel=1e-4, abs=1e-4)
    assert got["lmac_ai"] == pytest.approx(expected_ai)


def test_input_fidelity_of_silence(models):
    model = models[Task.MULTICLASS]
    ev = make_eval(model, mask_value=0.0)
    top_clip = probs_of(model, ev.test.logmel).argmax(dim=1)
    top_silent = probs_of(model, FE.logmel(torch.zeros(1, LENGTH))).argmax()
    got = published(metric("LMacMulticlass"), ev)["lmac_fid_in"]
    assert got == pytest.approx((top_clip == top_silent).float().mean().item())


def test_deletion_insertion_against_a_step_by_step_reference(models):
    model = models[Task.MULTICLASS]
    g = torch.Generator().manual_seed(5)
    rows = 2
    mask = torch.rand(rows, 513, FRAMES, generator=g)  # distinct values: the ranking is unique
    ev = make_eval(model, mask=mask, n_rows=rows)
    got = published(metric("DeletionInsertion"), ev)
    c = ev.explanations.classes.numpy()
    d = mask.shape[1] * mask.shape[2]
    fractions = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]  # written out by hand
    deletion, insertion = np.zeros((rows, 9)), np.zeros((rows, 9))
    for row in range(rows):
        order = np.argsort(-mask[row].numpy().ravel())
        for keep_top, curve in ((False, deletion), (True, insertion)):
            steps = []
            for fraction in fractions:
                top = np.zeros(d, dtype=bool)
                top[order[: round(fraction * d)]] = True
                steps.append((top if keep_top else ~top).reshape(mask.shape[1:]))
            m = torch.from_numpy(np.stack(steps).astype(np.float32))
            logmel = FE.logmel(FE.istft(ev.test.spec[row : row + 1] * m, LENGTH))
            curve[row] = probs_of(model, logmel)[:, c[row]].numpy()
    x = np.linspace(0, 1, 9)  # every step weighs the same
    assert got["deletion_auc"] == pytest.approx(np.trapezoid(deletion, x, axis=1).mean(), abs=2e-4)
    assert got["insertion_auc"] == pytest.approx(
        np.trapezoid(insertion, x, axis=1).mean(), abs=2e-4
    )
    assert tuple(fractions) == curves.FRACTIONS


# ------------------------------------------------------------------ fidelity


def test_fidelity_topk_against_loop(models):
    model = models[Task.MULTICLASS]
    surrogate = torch.randn(N, C, generator=torch.Generator().manual_seed(7))
    ev = make_eval(model, mask_value=0.5, surrogate=surrogate)
    got = published(metric("FidelityTopK"), ev)
    top = ev.classifier_logits.argmax(dim=1)
    for k in (1, 3, 5):
        expected = np.mean(
            [top[i].item() in surrogate[i].topk(k).indices.tolist() for i in range(N)]
        )
        assert got[f"fidelity_top{k}"] == pytest.approx(expected)
    same = make_eval(model, mask_value=0.5, surrogate=ev.classifier_logits.clone())
    assert published(metric("FidelityTopK"), same)["fidelity_top1"] == 1.0


def test_fidelity_auprc_uses_the_classifier_decisions(models):
    model = models[Task.MULTILABEL]
    ev = make_eval(model, mask_value=0.5)
    probs = torch.sigmoid(ev.classifier_logits)
    thresholds = probs.median(dim=0).values  # about half the clips positive per class
    decisions = probs > thresholds
    # a surrogate that ranks exactly by those decisions: perfect under fixed-11
    # distinct scores: DCASE's closed form 1 - 1/(2P) needs no ties among positives
    jitter = torch.rand(N, C, generator=torch.Generator().manual_seed(8))
    surrogate = torch.where(decisions, 3.0 + jitter, -3.0 - jitter)
    ev = make_eval(model, mask_value=0.5, surrogate=surrogate, thresholds=thresholds)
    got = published(metric("FidelityAUPRC"), ev)
    assert got["fidelity_auprc_macro_fixed11"] == pytest.approx(1.0)
    assert got["fidelity_auprc_micro_fixed11"] == pytest.approx(1.0)
    # DCASE per class (points by decreasing threshold, distinct scores): 1 - 1/(2 P_c)
    per_class = [1 - 0.5 / int(p) for p in decisions.sum(dim=0) if int(p) > 0]
    assert got["fidelity_auprc_macro_dcase"] == pytest.approx(np.mean(per_class))
    flipped = make_eval(model, mask_value=0.5, surrogate=-surrogate, thresholds=thresholds)
    assert published(metric("FidelityAUPRC"), flipped)["fidelity_auprc_micro_fixed11"] < 0.5


# -------------------------------------------------------------- ground truth


def make_condition(model, interference_gain: float = 1.0) -> ConditionSet:
    """Labels are the classifier's own top-1 on the mixture, so every row is scored."""
    target = clips(11)
    interference = (
        interference_gain
        * 0.3
        * torch.randn(N, LENGTH, generator=torch.Generator().manual_seed(12))
    )
    with torch.no_grad():
        logits = model(FE.logmel(target + interference))
    labels = logits.argmax(dim=1)
    batch = audio_batch(target + interference, torch.nn.functional.one_hot(labels, C).float())
    explanations = ExplanationSet(
        rows=torch.arange(N),
        classes=labels,
        mask=torch.ones(N, 513, FRAMES),
        relevance=None,
        waveform=target + interference,
    )
    return ConditionSet(
        "overlap", batch, {"target": target, "interference": interference}, explanations, logits
    )


def test_ground_truth_full_mask_keeps_all_target_energy(models):
    model = models[Task.MULTICLASS]
    cond = make_condition(model)
    ev = make_eval(model, mask_value=0.5, conditions={"overlap": cond})
    got = published(metric("GroundTruthLocalisation"), ev)
    assert got["gt_recall_overlap"] == pytest.approx(1.0)
    st, si = FE.stft(cond.stems["target"]), FE.stft(cond.stems["interference"])
    rho = st.abs() ** 2 / (st.abs() ** 2 + si.abs() ** 2)
    power = cond.batch.spec.abs() ** 2
    share = ((rho * power).sum(dim=(1, 2)) / power.sum(dim=(1, 2))).mean().item()
    assert got["gt_precision_overlap"] == pytest.approx(share, rel=1e-4)
    assert got["gt_scored_overlap"] == N
    assert math.isnan(got["gt_precision_noise"])  # no noise condition in this evaluation
    # the oracle's binary mask is more precise, and a wrong class is not scored
    cond.explanations.mask = (rho > 0.5).float()
    better = published(metric("GroundTruthLocalisation"), ev)
    assert better["gt_precision_overlap"] > got["gt_precision_overlap"] + 0.05
    cond.explanations.classes = (cond.explanations.classes + 1) % C
    assert math.isnan(published(metric("GroundTruthLocalisation"), ev)["gt_recall_overlap"])


def test_ground_truth_scores_only_rows_the_classifier_decides(models):
    """A.5.1's protocol: a row whose target class the classifier did not pick is left out."""
    model = models[Task.MULTICLASS]
    cond = make_condition(model)
    missed = torch.arange(N) % 2 == 0
    relabelled = cond.batch.targets.argmax(dim=1).clone()
    relabelled[missed] = (relabelled[missed] + 1) % C  # the classifier says otherwise there
    cond.batch.targets = torch.nn.functional.one_hot(relabelled, C).float()
    cond.explanations.classes = relabelled
    ev = make_eval(model, mask_value=0.5, conditions={"overlap": cond})
    got = published(metric("GroundTruthLocalisation"), ev)
    assert got["gt_scored_overlap"] == int((~missed).sum())
    st, si = FE.stft(cond.stems["target"]), FE.stft(cond.stems["interference"])
    rho = st.abs() ** 2 / (st.abs() ** 2 + si.abs() ** 2)
    power = cond.batch.spec.abs() ** 2
    share = (rho * power).sum(dim=(1, 2)) / power.sum(dim=(1, 2))
    assert got["gt_precision_overlap"] == pytest.approx(share[~missed].mean().item(), rel=1e-4)


# ---------------------------------------------------- complexity and timing


def test_complexity_of_binary_masks_matches_closed_form(models):
    mask = torch.zeros(N, 513, FRAMES)
    d = 513 * FRAMES
    keeps = [100, 5000, 20000, d]
    for row, k in enumerate(keeps):
        mask[row].view(-1)[:k] = 1.0
    ev = make_eval(models[Task.MULTICLASS], mask=mask, relevance=mask[:, 0, :10].clone() + 1.0)
    got = published(metric("MaskComplexity"), ev)
    assert got["mask_gini"] == pytest.approx(np.mean([(d - k) / d for k in keeps]), abs=1e-4)
    assert got["mask_entropy"] == pytest.approx(np.mean([np.log(k) for k in keeps]))
    rel = published(metric("RelevanceComplexity"), ev)
    assert rel["relevance_gini"] < 0.2  # values in [1, 2]: nearly flat


def test_timing_columns_are_the_runners_measurements(models):
    ev = make_eval(models[Task.MULTICLASS], mask_value=0.5)
    got = published(metric("Timing"), ev)
    ms = ev.timing.explain_ms_per_clip
    assert got["explain_ms_median"] == pytest.approx(np.median(ms))
    assert got["explain_ms_iqr"] == pytest.approx(np.subtract(*np.percentile(ms, [75, 25])))
    assert got["fit_seconds"] == 1.5 and got["peak_memory_mb"] == 123.0


# ------------------------------------------- operators, controls, threshold-free scores


def _band_floor(magnitude: torch.Tensor) -> torch.Tensor:
    """The clip's noise floor written out: 10th percentile over frames, per band."""
    return torch.quantile(magnitude, 0.1, dim=-1, keepdim=True)


def test_faithfulness_removes_log_domain_masks_as_the_l2i_code_does(models):
    """A log1p-domain ratio of 0.5 removed: expm1(0.5 log1p|X|) is what the L2I code
    leaves (``ff_silence_prob_drop``), far less than the (1 - 0.5)|X| a linear reading
    would leave; ``ff_prob_drop`` interpolates towards the band's floor instead of 0."""
    model = models[Task.MULTICLASS]
    ev = make_eval(model, mask_value=0.5)
    ev.explanations.mask_domain = MaskDomain.LOG1P
    c = ev.explanations.classes
    spec = ev.test.spec
    mag = spec.abs()
    p = probs_of(model, ev.test.logmel)[torch.arange(N), c]

    def drop(left_magnitude: torch.Tensor) -> float:
        left = torch.polar(left_magnitude, torch.angle(spec))
        p_left = probs_of(model, FE.logmel(FE.istft(left, LENGTH)))[torch.arange(N), c]
        return float(np.median((p - p_left).numpy()))

    silence = torch.expm1(0.5 * torch.log1p(mag))
    base = torch.minimum(mag, _band_floor(mag))
    floor = torch.expm1(0.5 * torch.log1p(mag) + 0.5 * torch.log1p(base))
    ff = published(metric("Faithfulness"), ev)
    # the two resynthesis paths (polar here, the metric's gain on the STFT) round apart
    # by up to ~2e-5 on some CPUs (1.7e-5 seen on an AMD EPYC); the two removals this
    # test tells apart differ by far more than the tolerance
    assert abs(drop(floor) - drop(silence)) > 20 * 1e-4
    assert ff["ff_silence_prob_drop"] == pytest.approx(drop(silence), abs=1e-4)
    assert ff["ff_prob_drop"] == pytest.approx(drop(floor), abs=1e-4)
    assert ff["ff_prob_drop"] != pytest.approx(ff["ff_silence_prob_drop"], abs=1e-4)
    linear = published(metric("Faithfulness"), make_eval(model, mask_value=0.5))
    assert ff["ff_silence_prob_drop"] != pytest.approx(linear["ff_silence_prob_drop"], abs=1e-4)


def test_faithfulness_controls_remove_the_same_energy_as_the_explanation(models):
    model = models[Task.MULTICLASS]
    ev = make_eval(model, mask_value=0.3)
    ev.explanations.mask_domain = MaskDomain.LOG1P
    specs = ev.test.spec[ev.explanations.rows]
    removed = 1 - perturb.remaining_share(specs, ev.explanations.mask, "log1p")
    random_masks = perturb.matched_random_masks(specs, removed, ev.generator("faithfulness/test"))
    got = 1 - perturb.remaining_share(specs, random_masks, "linear")
    assert torch.allclose(got, removed, atol=0.02)
    # the published control is that mask's drop, paired row by row
    out = metric("Faithfulness").compute(ev)
    c = ev.explanations.classes
    mag = specs.abs()
    left = (1 - random_masks) * mag + random_masks * torch.minimum(mag, _band_floor(mag))
    kept = FE.logmel(FE.istft(torch.polar(left, torch.angle(specs)), LENGTH))
    drop = (
        probs_of(model, ev.test.logmel)[torch.arange(N), c]
        - probs_of(model, kept)[torch.arange(N), c]
    )
    # float32 resynthesis paths differ by ~1e-4; removal to silence is ~1e-2 away
    assert list(out["ff_random_prob_drop"].values) == pytest.approx(drop.tolist(), abs=3e-4)
    silent = FE.logmel(FE.istft(specs * (1 - random_masks), LENGTH))
    silent_drop = (
        probs_of(model, ev.test.logmel)[torch.arange(N), c]
        - probs_of(model, silent)[torch.arange(N), c]
    )
    assert (silent_drop - drop).abs().max() > 3e-3
    diffs = np.array(out["ff_prob_drop"].values) - np.array(out["ff_random_prob_drop"].values)
    assert float(out["ff_prob_drop_minus_random"]) == pytest.approx(np.median(diffs))


def test_weighted_ranking_scores_by_hand():
    from l2i_bench.plugins.metrics.ground_truth import weighted_ranking_scores

    mask = torch.tensor([[0.9, 0.8, 0.1, 0.0]])
    positive = torch.tensor([[True, False, True, False]])
    weight = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    # pairs (pos, neg): (0.9 > 0.8) (0.9 > 0.0) (0.1 < 0.8) (0.1 > 0.0): 3 of 4
    auroc, ap = weighted_ranking_scores(mask, positive, weight)
    assert auroc == pytest.approx(0.75)
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))
    # weights count pairs: the 0.1 positive weighing 3 makes its pairs count three times
    auroc, _ = weighted_ranking_scores(mask, positive, torch.tensor([[1.0, 1.0, 3.0, 1.0]]))
    assert auroc == pytest.approx((1 + 1 + 0 + 3) / 8)
    # zero-weight bins are left out; all-positive gives NaN
    assert math.isnan(weighted_ranking_scores(mask, positive, positive.float())[0])


def test_threshold_free_scores_do_not_move_with_coverage(models):
    """The oracle ratio mask and the same mask squashed to keep far less energy rank the
    bins the same way: equal AUROC, while recall and coverage fall."""
    model = models[Task.MULTICLASS]
    cond = make_condition(model)
    st, si = FE.stft(cond.stems["target"]), FE.stft(cond.stems["interference"])
    rho = st.abs() ** 2 / (st.abs() ** 2 + si.abs() ** 2)
    cond.explanations.mask = rho.float()
    ev = make_eval(model, mask_value=0.5, conditions={"overlap": cond})
    full = published(metric("GroundTruthLocalisation"), ev)
    cond.explanations.mask = (0.1 * rho).float()
    small = published(metric("GroundTruthLocalisation"), ev)
    assert full["gt_auroc_overlap"] == pytest.approx(small["gt_auroc_overlap"], abs=1e-9)
    assert full["gt_auroc_overlap"] > 0.9
    assert small["gt_recall_overlap"] < 0.05 * full["gt_recall_overlap"]
    assert small["gt_coverage_overlap"] < full["gt_coverage_overlap"]
    # a keep-everything mask has no precision lift and chance AUROC (all ties)
    cond.explanations.mask = torch.ones_like(rho)
    flat = published(metric("GroundTruthLocalisation"), ev)
    assert flat["gt_precision_lift_overlap"] == pytest.approx(0.0, abs=1e-9)
    assert flat["gt_auroc_overlap"] == pytest.approx(0.5)


def test_mask_metrics_keep_condition_rows_apart_from_the_published_number(models):
    model = models[Task.MULTICLASS]
    ev = make_eval(model, mask_value=0.5, conditions={"overlap": make_condition(model)})
    assert "ff_prob_drop@overlap" not in metric("Faithfulness").compute(ev)  # a contender
    ev.explainer_is_reference = True
    out = metric("Faithfulness").compute(ev)
    assert all(k.startswith("test/") for k in out["ff_prob_drop"].keys)
    assert all(k.startswith("overlap/") for k in out["ff_prob_drop@overlap"].keys)
    assert len(out["ff_prob_drop@overlap"]) == N

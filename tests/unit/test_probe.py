"""Unit tests of the contrastive linear probe (ausweep.probe): CPU, synthetic embeddings, seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy import stats

from ausweep.config import ConfigError, describe, from_dict
from ausweep.probe import (
    ProbeConfig,
    above_chance_pvalue,
    accuracy_at_k,
    carve_validation,
    chance_at_k,
    class_scores,
    init_params,
    make_splits,
    masked_ranks,
    orthogonal_procrustes,
    procrustes_scores,
    retrieval_ranks,
    run,
    shuffled_pairing,
    split_masks,
    standard_error,
    train_probes,
)
from ausweep.probe.metrics import per_class_rows
from ausweep.probe.planted import planted_pair
from ausweep.probe.train import n_train_classes, row_span_basis


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These probes are small matmuls: one thread is as fast alone and several times faster on a
    loaded machine, where torch's worker threads wait for one another."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _labels(n: int) -> list[str]:
    return [f"class{i}" for i in range(n)]


def _linear_pair(n_classes: int = 60, text_dim: int = 32, audio_dim: int = 48, seed: int = 0):
    """Text T (C x dt) and audio A = T @ M + 0.01 noise: audio is a known linear image of text."""
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n_classes, text_dim))
    audio = text @ rng.standard_normal((text_dim, audio_dim)) + 0.01 * rng.standard_normal((n_classes, audio_dim))
    return text, audio


def _chance_bound(n_trials: int, chance: float, level: float = 0.999) -> float:
    """Largest hit rate a chance-level retriever reaches with probability ``level`` (binomial quantile)."""
    return stats.binom.ppf(level, n_trials, chance) / n_trials


# ----------------------------------------------------------------------------- batched == sequential


@pytest.mark.parametrize("with_control", [False, True])
def test_batched_training_equals_one_probe_at_a_time(with_control):
    """Probes of different widths (training vs fit classes) and each with its own audio vectors
    (per-split class means), padded into one batch, train exactly as they would alone."""
    n_classes, text_dim, audio_dim = 20, 12, 9
    text, audio = _linear_pair(n_classes, text_dim, audio_dim)
    cfg = ProbeConfig(epochs=40, shared_dim=8, n_splits=3, lr=1e-2)
    splits = make_splits(n_classes, cfg.n_splits, cfg.train_frac, cfg.seed)
    masks = np.concatenate([split_masks(splits, n_classes), split_masks(carve_validation(splits, 0.3, 0), n_classes)])
    masks[1, np.flatnonzero(masks[1])[0]] = False  # one probe a class short (a class without clips)
    assert len(set(masks.sum(1))) == 3
    n_probes = len(masks)
    per_probe_audio = audio + 0.1 * np.random.default_rng(1).standard_normal((n_probes, *audio.shape))
    pairing = np.tile(np.arange(n_classes), (n_probes, 1))
    if with_control:
        pairing = shuffled_pairing(masks, cfg.seed)
    splits_of = [p % cfg.n_splits for p in range(n_probes)]
    inits = init_params(text_dim, audio_dim, cfg.shared_dim, cfg.seed, splits_of)

    batched = train_probes(text, per_probe_audio, masks, cfg, inits, pairing)
    b_scores = class_scores(batched.probes, text, per_probe_audio)
    for p in range(n_probes):
        # The single probe builds its own init from (seed, split): nothing is shared with the batch.
        one = train_probes(
            text, per_probe_audio[p], masks[p : p + 1], cfg,
            init_params(text_dim, audio_dim, cfg.shared_dim, cfg.seed, [splits_of[p]]), pairing[p : p + 1],
        )
        for got, want in zip(batched.probes.params.select(slice(p, p + 1)).tensors(), one.probes.params.tensors()):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched.loss_curve[:, p : p + 1], one.loss_curve, atol=1e-5, rtol=1e-5)
        scores = class_scores(one.probes, text, per_probe_audio[p])
        np.testing.assert_allclose(b_scores[p : p + 1], scores, atol=1e-5)


def test_loss_decreases_and_init_depends_only_on_seed_and_split():
    text, audio = _linear_pair(20, 12, 9)
    result = run(text, audio, _labels(20), ProbeConfig(epochs=30, shared_dim=8, n_splits=2, procrustes=False))
    assert len(result.loss_curve) == 30
    assert result.loss_curve[-1] < result.loss_curve[0]
    many = init_params(12, 9, 8, seed=3, splits=[0, 1, 2])
    torch.testing.assert_close(many.select([2]).w_audio, init_params(12, 9, 8, seed=3, splits=[2]).w_audio)
    assert not torch.equal(many.w_text[0], many.w_text[1])


# ----------------------------------------------------------------------------- metrics by hand


def test_ranks_and_accuracy_on_a_hand_written_similarity_matrix():
    scores = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # true 0: best                          -> rank 1
            [0.5, 0.4, 0.6, 0.1],  # true 1: 0.5 and 0.6 beat 0.4          -> rank 3
            [0.2, 0.3, 0.1, 0.0],  # true 2: 0.2 and 0.3 beat 0.1          -> rank 3
            [0.7, 0.7, 0.7, 0.7],  # true 3: four-way tie counts against it -> rank 4
        ]
    )
    targets = np.array([0, 1, 2, 3])
    ranks = retrieval_ranks(scores, targets)
    np.testing.assert_array_equal(ranks, [1, 3, 3, 4])
    assert accuracy_at_k(ranks, 1) == 0.25
    assert accuracy_at_k(ranks, 2) == 0.25
    assert accuracy_at_k(ranks, 3) == 0.75
    assert accuracy_at_k(ranks, 4) == 1.0
    # A leading split dimension: accuracy per split.
    stacked = retrieval_ranks(np.stack([scores, scores[:, ::-1]]), np.stack([targets, 3 - targets]))
    np.testing.assert_array_equal(stacked, [[1, 3, 3, 4], [1, 3, 3, 4]])
    np.testing.assert_array_equal(accuracy_at_k(stacked, 1), [0.25, 0.25])


def test_masked_ranks_by_hand():
    scores = np.array(
        [
            [
                [0.9, 0.1, 0.2, 0.3],  # class 0: a query, best among all four -> rank 1
                [0.5, 0.4, 0.6, 0.1],  # class 1: a query; candidate 2 (0.6) beats it, 0 is no candidate -> 2
                [0.0, 0.0, 0.0, 0.0],  # class 2: no query
                [0.7, 0.7, 0.7, 0.7],  # class 3: a query; tie with candidates 1, 2 counts against it -> 3
            ]
        ]
    )
    queries = np.array([[True, True, False, True]])
    ranks = masked_ranks(scores, queries, np.array([[True, True, True, True]]))
    np.testing.assert_array_equal(ranks, [[1, 3, 0, 4]])
    ranks = masked_ranks(scores, queries, np.array([[False, True, True, True]]) | np.eye(4, dtype=bool)[0])
    np.testing.assert_array_equal(ranks, [[1, 3, 0, 4]])
    ranks = masked_ranks(scores, np.array([[False, True, False, True]]), np.array([[False, True, True, True]]))
    np.testing.assert_array_equal(ranks, [[0, 2, 0, 3]])
    # 0 means "no query": accuracy over the two queries only; a split with none is NaN
    np.testing.assert_array_equal(accuracy_at_k(np.array([[0, 2, 0, 3], [0, 0, 0, 0]]), 2), [0.5, np.nan])
    with pytest.raises(ValueError, match="among its own retrieval candidates"):
        masked_ranks(scores, queries, np.array([[False, True, True, True]]))


def test_per_class_rows_by_hand():
    # split 0 queries classes 0 (rank 1) and 2 (rank 7); split 1 queries 2 (rank 2) and 1 (rank 1)
    ranks = np.array([[1, 0, 7, 0], [0, 1, 2, 0]])
    rows = per_class_rows(ranks, ["a", "b", "c", "d"])
    assert [r["n_heldout"] for r in rows] == [1, 1, 2, 0]
    assert rows[0] == {"label": "a", "n_heldout": 1, "hit@1": 1.0, "hit@5": 1.0, "mean_rank": 1.0}
    assert rows[2]["hit@1"] == 0.0 and rows[2]["hit@5"] == 0.5 and rows[2]["mean_rank"] == 4.5
    assert math.isnan(rows[3]["hit@1"])


def test_chance_standard_error_and_binomial_formulas():
    assert chance_at_k(1, 60) == pytest.approx(1 / 60)
    assert chance_at_k(5, 144) == pytest.approx(5 / 144)
    assert chance_at_k(10, 5) == 1.0  # capped: K beyond the candidates always hits
    with pytest.raises(ValueError):
        chance_at_k(1, 0)
    values = [0.5, 0.7, 0.6, 0.9]
    assert standard_error(values) == pytest.approx(np.std(values, ddof=1) / 2)
    assert math.isnan(standard_error([0.5]))
    # P(X >= 7) for X ~ Binomial(90, 1/60).
    assert above_chance_pvalue(7, 90, 1 / 60) == pytest.approx(stats.binom.sf(6, 90, 1 / 60))
    assert above_chance_pvalue(0, 90, 1 / 60) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("n_classes,n_train", [(144, 101), (60, 42), (10, 7), (15, 11), (3, 2)])
def test_splits_are_disjoint_cover_all_and_round_half_up(n_classes, n_train):
    # 0.7 * C rounded half up: 100.8 -> 101, 42, 7, 10.5 -> 11, 2.1 -> 2.
    assert n_train_classes(n_classes, 0.7) == n_train
    splits = make_splits(n_classes, 5, 0.7, seed=0)
    assert len(splits) == 5
    for train_idx, test_idx in splits:
        assert len(train_idx) == n_train and len(test_idx) == n_classes - n_train
        assert not set(train_idx) & set(test_idx)
        assert sorted(np.concatenate([train_idx, test_idx])) == list(range(n_classes))


def test_splits_are_reproducible_and_seeded_per_split():
    a = make_splits(50, 4, 0.7, seed=1)
    b = make_splits(50, 6, 0.7, seed=1)
    c = make_splits(50, 4, 0.7, seed=2)
    for (tr_a, te_a), (tr_b, te_b) in zip(a, b):  # split s depends on (seed, s) only, not on n_splits
        np.testing.assert_array_equal(tr_a, tr_b)
        np.testing.assert_array_equal(te_a, te_b)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    assert not np.array_equal(a[0][0], a[1][0])
    masks = split_masks(a, 50)
    assert masks.shape == (4, 50) and (masks.sum(1) == 35).all()


def test_too_few_classes_to_split():
    with pytest.raises(ValueError, match="at least 2 training classes and 1 held-out"):
        make_splits(2, 5, 0.7, seed=0)
    with pytest.raises(ValueError, match="at least 2 training classes and 1 held-out"):
        make_splits(4, 5, 0.9, seed=0)  # round(3.6) = 4 train, 0 held out


def test_shuffled_pairing_permutes_only_training_rows():
    splits = make_splits(30, 3, 0.7, seed=0)
    pairing = shuffled_pairing(split_masks(splits, 30), seed=0)
    for (train_idx, test_idx), row in zip(splits, pairing):
        np.testing.assert_array_equal(row[test_idx], test_idx)
        assert sorted(row[train_idx]) == list(train_idx)
        assert (row[train_idx] != train_idx).mean() > 0.5  # actually shuffled
    np.testing.assert_array_equal(pairing, shuffled_pairing(split_masks(splits, 30), seed=0))


@pytest.mark.parametrize("n_classes,val_fraction,n_val", [(100, 0.2, 14), (143, 0.2, 20), (10, 0.25, 2)])
def test_validation_classes_come_from_training_classes_only(n_classes, val_fraction, n_val):
    splits = make_splits(n_classes, 5, 0.7, seed=0)
    carved = carve_validation(splits, val_fraction, seed=0)
    for (train_idx, test_idx), (fit_idx, val_idx) in zip(splits, carved):
        assert len(val_idx) == n_val and len(fit_idx) == len(train_idx) - n_val
        assert not set(fit_idx) & set(val_idx)
        assert sorted(np.concatenate([fit_idx, val_idx])) == list(train_idx)
        assert not set(val_idx) & set(test_idx)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(carved, carved[1:]))  # drawn per split
    for a, b in zip(carved, carve_validation(splits, val_fraction, seed=0)):
        np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="at least 1 validation and 2 fit classes"):
        carve_validation(make_splits(4, 1, 0.75, seed=0), 0.1, seed=0)  # 3 training classes, 0 validation


def test_validation_metrics_never_see_the_heldout_classes():
    """Replace the held-out classes' text and audio with anything: the validation metrics (what a
    sweep selects on) do not move by a bit; the held-out metrics do."""
    text, audio = _linear_pair()
    cfg = ProbeConfig(n_splits=1, procrustes=False)
    _, test_idx = make_splits(60, 1, cfg.train_frac, cfg.seed)[0]
    before = run(text, audio, _labels(60), cfg).metrics
    rng = np.random.default_rng(5)
    text2, audio2 = text.copy(), audio.copy()
    text2[test_idx] = rng.standard_normal((len(test_idx), text.shape[1]))
    audio2[test_idx] = rng.standard_normal((len(test_idx), audio.shape[1]))
    after = run(text2, audio2, _labels(60), cfg).metrics
    val_keys = [k for k in before if k.startswith("val/")]
    assert len(val_keys) == 12 and before["val/acc@1"] > 0.5
    np.testing.assert_equal({k: after[k] for k in val_keys}, {k: before[k] for k in val_keys})  # NaN s.e.: one split
    assert before["test/acc@1"] > 0.5 and after["test/acc@1"] < before["test/acc@1"]


# ----------------------------------------------------------------------------- Procrustes


def test_procrustes_recovers_a_known_rotation():
    rng = np.random.default_rng(0)
    text = rng.standard_normal((50, 16))
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))  # a random orthogonal matrix
    audio = text @ q
    r = orthogonal_procrustes(torch.as_tensor(audio), torch.as_tensor(text)).numpy()
    # audio @ R = text is solved by R = Q^T exactly.
    np.testing.assert_allclose(r, q.T, atol=1e-10)
    np.testing.assert_allclose(r, scipy.linalg.orthogonal_procrustes(audio, text)[0], atol=1e-10)


def test_procrustes_baseline_retrieves_perfectly_under_a_rotation():
    rng = np.random.default_rng(1)
    text = rng.standard_normal((40, 16))
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    audio = text @ q
    splits = make_splits(40, 3, 0.7, seed=0)
    train = split_masks(splits, 40)
    # No standardisation: per-feature scaling of each side would turn the rotation into a
    # general linear map. PCA keeps the relation (A's principal axes are T's, rotated by Q).
    scores = procrustes_scores(text, audio, train, 16, standardize=False)
    for candidates in (np.ones_like(train), ~train):
        ranks = masked_ranks(scores, ~train, candidates)
        assert (ranks[~train] == 1).all()
    cfg = ProbeConfig(epochs=1, n_splits=3, permutation_control=False, standardize=False, shared_dim=16)
    assert run(text, audio, _labels(40), cfg).metrics["test/procrustes_acc@1"] == 1.0


# ----------------------------------------------------------------------------- known answers end to end


@pytest.fixture(scope="module")
def aligned_result():
    text, audio = _linear_pair()
    return run(text, audio, _labels(60), ProbeConfig())


@pytest.fixture(scope="module")
def shuffled_result():
    text, audio = _linear_pair()
    audio = audio[np.random.default_rng(7).permutation(60)]  # pairs broken: row i no longer class i
    return run(text, audio, _labels(60), ProbeConfig(procrustes=False))


def test_linear_relation_is_found(aligned_result):
    m = aligned_result.metrics
    assert m["test/acc@1"] > 0.9 and m["val/acc@1"] > 0.9
    assert m["test/acc@5"] >= m["test/acc@1"]
    assert m["test/procrustes_acc@1"] > 0.9  # A is linear in T and PCA keeps all 32 directions
    assert m["test/above_chance@1"] < 1e-10


def test_permutation_control_sits_at_chance(aligned_result):
    # 5 splits x 18 held-out classes = 90 retrievals; at chance (1/60) a hit rate above the
    # binomial 99.9 % quantile happens less than once in a thousand (7/90 = 0.078 here).
    m = aligned_result.metrics
    n_trials = int(m["n_test_classes"]) * 5
    assert m["test/perm_acc@1"] <= _chance_bound(n_trials, m["test/chance@1"])
    assert m["test/perm_acc@5"] <= _chance_bound(n_trials, m["test/chance@5"])


def test_shuffled_pairs_sit_at_chance(shuffled_result):
    m = shuffled_result.metrics
    n_trials = int(m["n_test_classes"]) * 5
    assert m["test/acc@1"] <= _chance_bound(n_trials, m["test/chance@1"])
    assert m["test/acc@5"] <= _chance_bound(n_trials, m["test/chance@5"])
    assert m["test/above_chance@1"] > 0.001
    n_val_trials = int(m["n_val_classes"]) * 5
    assert m["val/acc@1"] <= _chance_bound(n_val_trials, m["val/chance@1"])


# ----------------------------------------------------------------------------- the paper's regime


@pytest.fixture(scope="module", params=["flat", "decaying"])
def paper_sized(request):
    """100 classes, 768-d text, 527-d audio = text @ W + 10 % noise, 70 training classes per split:
    each map has far more input dimensions than training classes, as in Ngo & Kim (2024)."""
    text, audio = planted_pair(100, 768, 527, spectrum=request.param, noise=0.1, seed=0)
    shuffled = audio[np.random.default_rng(7).permutation(100)]
    return request.param, run(text, audio, _labels(100), ProbeConfig()), run(text, shuffled, _labels(100), ProbeConfig(procrustes=False))


def test_paper_sized_planted_relation_is_found_with_default_settings(paper_sized):
    spectrum, result, _ = paper_sized
    m = result.metrics
    assert m["n_train_classes"] == 70
    assert m["test/acc@1"] >= 0.9, f"{spectrum} spectrum: held-out acc@1 {m['test/acc@1']:.3f}"
    assert m["val/acc@1"] >= 0.9, f"{spectrum} spectrum: validation acc@1 {m['val/acc@1']:.3f}"
    n_trials = int(m["n_test_classes"]) * 5
    assert m["test/perm_acc@1"] <= _chance_bound(n_trials, m["test/chance@1"])


def test_paper_sized_shuffled_pairs_sit_at_chance(paper_sized):
    spectrum, _, shuffled = paper_sized
    m = shuffled.metrics
    n_trials = int(m["n_test_classes"]) * 5
    assert m["test/acc@1"] <= _chance_bound(n_trials, m["test/chance@1"]), spectrum
    assert m["test/acc@5"] <= _chance_bound(n_trials, m["test/chance@5"]), spectrum


def test_unrestricted_maps_miss_a_flat_relation():
    """Why ``restrict_to_span`` is on: random weights on the directions no training class spans
    swamp a flat-spectrum relation that the restricted probe (above) and Procrustes find."""
    text, audio = planted_pair(100, 768, 527, spectrum="flat", noise=0.1, seed=0)
    cfg = ProbeConfig(restrict_to_span=False, permutation_control=False, n_splits=2)
    m = run(text, audio, _labels(100), cfg).metrics
    assert m["test/acc@1"] < 0.3 and m["test/procrustes_acc@1"] > 0.9


def test_row_span_basis_projects_like_numpy_and_trained_maps_stay_in_the_span():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 20))
    x[1] -= x[1].mean(0)  # centred rows span 5 dimensions, not 6
    basis = row_span_basis(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    for s in range(2):
        want = np.linalg.pinv(x[s]) @ x[s]  # the orthogonal projection onto the row span
        np.testing.assert_allclose(basis[s] @ basis[s].T, want, atol=1e-5)
    assert np.linalg.matrix_rank(basis[1]) == 5

    text, audio = planted_pair(30, 40, 24, seed=1)
    cfg = ProbeConfig(epochs=20, shared_dim=8, n_splits=2)
    splits = make_splits(30, 2, cfg.train_frac, cfg.seed)
    trained = train_probes(text, audio, split_masks(splits, 30), cfg, init_params(40, 24, 8, cfg.seed, range(2)))
    p = trained.probes
    for s, (train_idx, _) in enumerate(splits):
        for x, w, mean, std in ((text, p.params.w_text, p.text_mean, p.text_std), (audio, p.params.w_audio, p.audio_mean, p.audio_std)):
            z = ((x[train_idx] - mean[s].numpy()) / std[s].numpy()).astype(np.float64)
            outside = np.eye(z.shape[1]) - np.linalg.pinv(z) @ z
            assert np.abs(outside @ w[s].double().numpy()).max() < 1e-5


def test_metric_names_and_per_class_rows(aligned_result):
    ks = [1, 3, 5, 10]
    expected = {"final_loss", "n_classes", "n_train_classes", "n_fit_classes", "n_val_classes", "n_test_classes",
                "test/above_chance@1"}
    for k in ks:
        expected |= {f"val/acc@{k}", f"val/acc@{k}_se", f"val/chance@{k}"}
        expected |= {f"test/acc@{k}", f"test/acc@{k}_se", f"test/chance@{k}", f"test/perm_acc@{k}", f"test/perm_acc@{k}_se"}
        expected |= {f"test/procrustes_acc@{k}", f"test/procrustes_acc@{k}_se"}
    m = aligned_result.metrics
    assert set(m) == expected
    assert all(isinstance(v, float) for v in m.values())
    assert (m["n_classes"], m["n_train_classes"], m["n_test_classes"]) == (60, 42, 18)
    assert (m["n_fit_classes"], m["n_val_classes"]) == (34, 8)  # 0.2 * 42 = 8.4 -> 8
    assert m["test/chance@1"] == pytest.approx(1 / 60)
    assert m["val/chance@1"] == pytest.approx(1 / 42)  # validation audio retrieves among the training classes
    assert len(aligned_result.loss_curve) == 300
    assert m["final_loss"] <= aligned_result.loss_curve[-1] + 1e-6
    rows = aligned_result.per_class
    assert [r["label"] for r in rows] == _labels(60)
    assert sum(r["n_heldout"] for r in rows) == 5 * 18


def test_heldout_candidates_change_chance():
    text, audio = _linear_pair(20, 12, 9)
    cfg = ProbeConfig(epochs=5, n_splits=2, candidates="heldout", procrustes=False, permutation_control=False)
    m = run(text, audio, _labels(20), cfg).metrics
    assert m["test/chance@1"] == pytest.approx(1 / 6)  # 20 - 14 held-out candidates
    assert m["val/chance@1"] == pytest.approx(1 / 3)  # 0.2 * 14 = 2.8 -> 3 validation candidates
    assert m["test/chance@10"] == 1.0
    assert "test/perm_acc@1" not in m and "test/procrustes_acc@1" not in m


# ----------------------------------------------------------------------------- input and config errors


@pytest.mark.parametrize(
    "text_shape,audio_shape,n_labels,match",
    [
        ((20, 8), (19, 6), 20, "text has 20 class rows but audio has 19"),
        ((20, 8), (20, 6), 19, "19 labels for 20 class rows"),
        ((20,), (20, 6), 20, "2-D array"),
        ((2, 8), (2, 6), 2, "at least 2 training classes"),
    ],
)
def test_run_rejects_bad_inputs(text_shape, audio_shape, n_labels, match):
    with pytest.raises(ValueError, match=match):
        run(np.ones(text_shape), np.ones(audio_shape), _labels(n_labels), ProbeConfig(epochs=1))


def test_run_rejects_nan():
    text, audio = _linear_pair(20, 8, 6)
    audio[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"audio embeddings have NaN or inf in 1 class row\(s\), first \[3\]"):
        run(text, audio, _labels(20), ProbeConfig(epochs=1))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("lr", 0.0, "lr must be > 0"),
        ("shared_dim", 0, "shared_dim must be >= 1"),
        ("temperature", -0.1, "temperature must be > 0"),
        ("weight_decay", -1e-4, "weight_decay must be >= 0"),
        ("epochs", 0, "epochs must be >= 1"),
        ("n_splits", 0, "n_splits must be >= 1"),
        ("train_frac", 1.0, "train_frac must be strictly between 0 and 1"),
        ("train_frac", 0.0, "train_frac must be strictly between 0 and 1"),
        ("val_fraction", 0.0, "val_fraction must be strictly between 0 and 1"),
        ("val_fraction", 1.0, "val_fraction must be strictly between 0 and 1"),
        ("seed", -1, "seed must be >= 0"),
        ("ks", [], "ks must name at least one K"),
        ("ks", [1, 0], "every K in ks must be an integer >= 1"),
        ("ks", [1, 1], "ks has repeated values"),
        ("candidates", "train", "candidates must be one of"),
        ("device", "gpu", "device must be"),
    ],
)
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        ProbeConfig(**{field: value})
    with pytest.raises(ConfigError):  # the same through the dict path, which names where it came from
        from_dict(ProbeConfig, {field: value}, where="configs/probe.yaml")


def test_config_defaults_and_help():
    cfg = from_dict(ProbeConfig, {"lr": "3e-4", "ks": [1, 5]})
    assert cfg.lr == 3e-4 and cfg.ks == [1, 5] and cfg.temperature == 0.07 and cfg.n_splits == 5
    assert ProbeConfig().ks is not ProbeConfig().ks  # a fresh list per instance
    assert all(help_text for _, _, help_text in describe(ProbeConfig))

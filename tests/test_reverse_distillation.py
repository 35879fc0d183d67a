"""Tests of skad.ReverseDistillation (vector and image mode)."""

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from torch import nn

from skad import ReverseDistillation
from skad._validation import InvalidParameterError
from skad.metrics import roc_auc
from tests._helpers import ConvTeacher as _ConvTeacher
from tests._helpers import make_planted
from tests._helpers import seeded as _seeded

FAST = dict(max_iter=5, pretrain_epochs=3, device="cpu", random_state=0)


class _VectorTeacher(nn.Module):
    """A user-supplied frozen MLP teacher returning two feature tensors."""

    def __init__(self, n_features):
        super().__init__()
        self.a = nn.Linear(n_features, 32)
        self.b = nn.Linear(32, 16)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        return [h, torch.tanh(self.b(h))]


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_learns_planted_anomalies():
    X, y = make_planted()
    det = ReverseDistillation(max_iter=50, device="cpu", random_state=0).fit(X)
    assert roc_auc(y, det.score_samples(X)) >= 0.95


@pytest.mark.parametrize("teacher", ["pretrained_ae", "random", "module"])
def test_teacher_options(teacher):
    X, y = make_planted(seed=1)
    if teacher == "module":
        with torch.random.fork_rng():
            teacher = _seeded(_VectorTeacher(X.shape[1]))
    det = ReverseDistillation(teacher=teacher, **{**FAST, "max_iter": 30}).fit(X)
    assert roc_auc(y, det.score_samples(X)) > 0.8
    assert len(det.scale_shapes_) == (2 if isinstance(teacher, nn.Module) else 3)
    assert hasattr(det, "teacher_reconstruction_error_") == (teacher == "pretrained_ae")


class _Spy(ReverseDistillation):
    """Records the teacher when the student's phase starts and checks, after
    every student epoch, that it is still frozen and unchanged."""

    def _fit_phases(self, *phases, rng):
        student = [p for p in phases if p.record == "main"]
        if student:
            start = _state(self.teacher_)
            self.teacher_at_student_start_ = start
            self.student_epochs_checked_ = 0

            def check(history):
                assert not any(p.requires_grad for p in self.teacher_.parameters())
                assert not self.teacher_.training
                for k, v in _state(self.teacher_).items():
                    assert torch.equal(v, start[k]), k
                self.student_epochs_checked_ += 1

            phases = [
                dataclasses.replace(p, on_epoch_end=[*p.on_epoch_end, check])
                if p.record == "main"
                else p
                for p in phases
            ]
        return super()._fit_phases(*phases, rng=rng)


def test_user_teacher_unchanged_after_fit():
    X, _ = make_planted(n_normal=100)
    with torch.random.fork_rng():
        user = _seeded(_VectorTeacher(X.shape[1]))
    before = _state(user)
    det = _Spy(teacher=user, **FAST).fit(X)
    assert det.student_epochs_checked_ == det.n_iter_
    assert det.teacher_ is not user
    for k, v in user.state_dict().items():
        assert torch.equal(v, before[k])
        assert torch.equal(det.teacher_.state_dict()[k].float(), before[k])
        assert torch.equal(det.teacher_at_student_start_[k], before[k])
    # the user's module is neither frozen nor switched to eval mode in place
    assert all(p.requires_grad for p in user.parameters())
    assert user.training


@pytest.mark.parametrize("teacher", ["random", "pretrained_ae"])
def test_builtin_teacher_frozen_while_student_trains(teacher):
    X, _ = make_planted(n_normal=100)
    det = _Spy(teacher=teacher, **FAST).fit(X)
    assert det.student_epochs_checked_ == det.n_iter_ == FAST["max_iter"]
    assert not any(p.requires_grad for p in det.teacher_.parameters())
    for k, v in _state(det.teacher_).items():
        assert torch.equal(v.float(), det.teacher_at_student_start_[k])
    if teacher == "random":
        w = det.teacher_.stages[1][0].weight.detach()  # 64 x 128, orthonormal rows
        np.testing.assert_allclose((w @ w.T).numpy(), np.eye(w.shape[0]), atol=1e-5)


@pytest.mark.parametrize("loss", ["flattened", "grouped"])
@pytest.mark.parametrize("anomaly_score", ["mean", "max"])
def test_loss_forms(loss, anomaly_score):
    X, y = make_planted(seed=2)
    det = ReverseDistillation(
        loss=loss, anomaly_score=anomaly_score, **{**FAST, "max_iter": 30}
    ).fit(X)
    assert np.all(np.isfinite(det.loss_curve_))
    assert roc_auc(y, det.score_samples(X)) > 0.8


def test_grouped_and_flattened_differ():
    X, _ = make_planted(n_normal=100)
    a = ReverseDistillation(loss="flattened", **FAST).fit(X).score_samples(X)
    b = ReverseDistillation(loss="grouped", **FAST).fit(X).score_samples(X)
    assert not np.allclose(a, b)


def test_latent_dim_must_be_narrow():
    X, _ = make_planted(n_normal=50)
    det = ReverseDistillation(hidden_layer_sizes=(8, 4), latent_dim=12, **FAST)
    with pytest.raises(ValueError, match="latent_dim=12 must be smaller"):
        det.fit(X)
    assert not hasattr(det, "teacher_")  # checked before any network is built
    with torch.random.fork_rng():
        user = _seeded(_VectorTeacher(X.shape[1]))  # scales of 32 and 16
    det = ReverseDistillation(teacher=user, latent_dim=48, **FAST)
    with pytest.raises(ValueError, match="latent_dim=48 must be smaller .*48"):
        det.fit(X)
    ReverseDistillation(teacher=user, latent_dim=47, **FAST).fit(X)


@pytest.mark.parametrize(
    "params",
    [
        {"hidden_layer_sizes": (-4,)},
        {"hidden_layer_sizes": (0,)},
        {"hidden_layer_sizes": ()},
        {"hidden_layer_sizes": (8, 2.5)},
        {"hidden_layer_sizes": 8},
        {"latent_dim": 0},
        {"anomaly_score": "sum"},
        {"pretrain_epochs": 0},
        {"pretrain_epochs": "many"},
        {"max_iter": 0},
    ],
)
def test_invalid_parameters_rejected_before_building(params):
    X, _ = make_planted(n_normal=30)
    det = ReverseDistillation(**{**FAST, **params})
    with pytest.raises(InvalidParameterError):
        det.fit(X)
    assert not hasattr(det, "teacher_")


def test_vector_mode_rejects_images():
    X = np.zeros((10, 1, 8, 8))
    with pytest.raises(ValueError, match="4-D array"):
        ReverseDistillation(**FAST).fit(X)
    det = ReverseDistillation(**FAST).fit(np.random.default_rng(0).normal(size=(30, 4)))
    with pytest.raises(ValueError, match="4-D array"):
        det.score_samples(np.zeros((3, 1, 2, 2)))
    with pytest.raises(ValueError, match="image mode"):
        det.anomaly_map(np.zeros((3, 4)))


def test_clone_keeps_user_module_separate():
    with torch.random.fork_rng():
        user = _seeded(_VectorTeacher(8))
    det = ReverseDistillation(teacher=user, **FAST)
    twin = clone(det)
    assert twin.teacher is not user
    assert isinstance(twin.teacher, _VectorTeacher)


def _digits(normal_digit=0, seed=0):
    digits = load_digits()
    X = (digits.data / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    y = (digits.target != normal_digit).astype(int)
    rng = np.random.default_rng(seed)
    test = rng.random(len(y)) < 0.3
    train = ~test & (y == 0)
    return X[train], X[test], y[test]


def test_image_mode_digits():
    X_train, X_test, y_test = _digits()
    with torch.random.fork_rng():
        teacher = _seeded(_ConvTeacher())
    before = _state(teacher)
    det = ReverseDistillation(
        teacher=teacher,
        latent_dim=8,
        sigma=1.0,
        max_iter=25,
        batch_size=32,
        device="cpu",
        random_state=0,
    ).fit(X_train)
    assert det.input_mode_ == "image"
    assert det.scale_shapes_ == [(8, 8, 8), (16, 4, 4), (32, 2, 2)]
    auc = roc_auc(y_test, det.score_samples(X_test))
    assert auc >= 0.9, auc
    maps = det.anomaly_map(X_test[:5])
    assert maps.shape == (5, 8, 8)
    assert maps.dtype == np.float64
    # the image score is the maximum of the smoothed map
    np.testing.assert_allclose(
        -det.score_samples(X_test[:5]), maps.reshape(5, -1).max(axis=1)
    )
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="samples of shape"):
        det.score_samples(np.zeros((2, 1, 6, 6)))
    # a subset scores like the full batch
    np.testing.assert_allclose(
        det.score_samples(X_test[:7]), det.score_samples(X_test)[:7], atol=1e-7
    )


def test_image_mode_deterministic_and_mean_score():
    X_train, X_test, _ = _digits()
    with torch.random.fork_rng():
        teacher = _seeded(_ConvTeacher())
    kw = dict(teacher=teacher, latent_dim=8, max_iter=2, batch_size=64)
    a = ReverseDistillation(device="cpu", random_state=3, **kw).fit(X_train)
    b = ReverseDistillation(device="cpu", random_state=3, **kw).fit(X_train)
    np.testing.assert_array_equal(a.score_samples(X_test), b.score_samples(X_test))
    c = ReverseDistillation(
        device="cpu", random_state=3, anomaly_score="mean", loss="grouped", **kw
    ).fit(X_train)
    maps = c.anomaly_map(X_test[:4])
    np.testing.assert_allclose(
        -c.score_samples(X_test[:4]), maps.reshape(4, -1).mean(axis=1)
    )


def test_gaussian_matrix_matches_scipy():
    from scipy.ndimage import gaussian_filter

    from skad.reverse_distillation._loss import gaussian_matrix

    img = np.random.default_rng(0).random((8, 12))
    for sigma in (0.7, 4.0):
        gh = gaussian_matrix(8, sigma, torch.float64, "cpu").numpy()
        gw = gaussian_matrix(12, sigma, torch.float64, "cpu").numpy()
        np.testing.assert_allclose(
            gh @ img @ gw.T, gaussian_filter(img, sigma, mode="reflect"), atol=1e-12
        )


def test_huge_row_scores_finite_and_outlier():
    # The teacher's LayerNorm and the cosine distance ignore a row's scale, so
    # a numerically stable LayerNorm would score a normal row times 1e30 as
    # normal; its variance overflows float32 instead, and the base gives the
    # non-finite score the most anomalous finite value.
    X, y = make_planted(n_normal=100)
    det = ReverseDistillation(**FAST).fit(X)
    huge = X[y == 0][:3] * 1e30
    assert np.all(np.isfinite(huge.astype(np.float32)))
    assert np.isfinite(det.score_samples(huge)).all()
    np.testing.assert_array_equal(det.predict(huge), -1)


class _PhaseSpy(ReverseDistillation):
    """Records each phase's number of epochs, then runs it for one epoch."""

    def _fit_phases(self, *phases, rng):
        self.planned_ = {**getattr(self, "planned_", {})}
        self.planned_.update({p.record: p.max_iter for p in phases})
        phases = [dataclasses.replace(p, max_iter=1) for p in phases]
        return super()._fit_phases(*phases, rng=rng)


@pytest.mark.parametrize(
    ("n", "batch_size", "student", "teacher"),
    [
        (100, 50, 1000, 500),  # 2 updates per epoch
        (160, 128, 1000, 500),  # a last, smaller batch counts as an update
        (1000, 128, 250, 125),
        (5000, 128, 100, 30),  # the minimum numbers of epochs
    ],
)
def test_auto_epochs(n, batch_size, student, teacher):
    X = np.random.default_rng(0).normal(size=(n, 3))
    det = _PhaseSpy(device="cpu", random_state=0, batch_size=batch_size).fit(X)
    assert det.planned_ == {"teacher": teacher, "main": student}


def test_int_epochs_run_exactly():
    # max_iter=100 on 160 rows runs 100 epochs (no hidden minimum of updates)
    X, _ = make_planted(n_normal=140, n_anomaly=20)
    det = _PhaseSpy(max_iter=100, pretrain_epochs=7, device="cpu").fit(X)
    assert det.planned_ == {"teacher": 7, "main": 100}
    params = {**FAST, "teacher": "random", "max_iter": 2, "batch_size": 50}
    assert ReverseDistillation(**params).fit(X).n_iter_ == 2
    det = ReverseDistillation(**{**params, "teacher": "pretrained_ae"}).fit(X)
    assert len(det.teacher_loss_curve_) == FAST["pretrain_epochs"]
    assert det.teacher_reconstruction_error_ == det.teacher_loss_curve_[-1]


def test_persistence_round_trip(tmp_path):
    import pickle

    import skad

    X, _ = make_planted(n_normal=100)
    det = ReverseDistillation(**FAST).fit(X)
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.score_samples(X), det.score_samples(X))
    skad.save(det, tmp_path / "rd")
    loaded = skad.load(tmp_path / "rd")
    np.testing.assert_allclose(loaded.score_samples(X), det.score_samples(X))

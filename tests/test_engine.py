"""The engine: phases run by one loop, mini-batches, local random state."""

import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

from skad import TrainingDivergedError, _engine
from skad._engine import Phase, run_phases


def _rng(seed=0):
    return _engine.make_random_state(seed, torch.device("cpu"))


def _linear_task(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=gen)
    y = X @ torch.tensor([1.0, -2.0, 0.5])
    model = nn.Linear(3, 1)
    return X, y, model


def _phase(model, X, y, **kwargs):
    def step(idx):
        return ((model(X[idx]).squeeze(1) - y[idx]) ** 2)  # per-row losses

    kwargs.setdefault("max_iter", 5)
    kwargs.setdefault("batch_size", 16)
    return Phase(
        name=kwargs.pop("name", "test"),
        step=step,
        n_samples=X.shape[0],
        modules=[model],
        optimizers=[_engine.make_optimizer(model.parameters(), 0.05)],
        **kwargs,
    )


def test_per_row_losses_are_averaged_and_training_learns():
    X, y, model = _linear_task()
    records = run_phases(
        [_phase(model, X, y, max_iter=40)], rng=_rng(), device=torch.device("cpu")
    )
    curve = records["main"].loss_curve
    assert len(curve) == records["main"].n_iter <= 40
    assert curve[-1] < 0.1 * curve[0]


def test_phases_sharing_a_record_are_merged():
    X, y, model = _linear_task()
    records = run_phases(
        [
            _phase(model, X, y, max_iter=3),
            _phase(model, X, y, max_iter=4),
            _phase(model, X, y, max_iter=2, record="other"),
        ],
        rng=_rng(),
        device=torch.device("cpu"),
    )
    assert records["main"].n_iter == 7 and len(records["main"].loss_curve) == 7
    assert records["other"].n_iter == 2


def test_a_phase_with_no_epochs_is_skipped():
    X, y, model = _linear_task()
    records = run_phases(
        [_phase(model, X, y, max_iter=0)], rng=_rng(), device=torch.device("cpu")
    )
    assert records == {}


def test_on_epoch_end_callbacks_run_and_can_stop():
    X, y, model = _linear_task()
    seen = []

    def callback(history):
        seen.append(history.n_iter)
        return history.n_iter == 3

    records = run_phases(
        [_phase(model, X, y, max_iter=10, on_epoch_end=[callback])],
        rng=_rng(),
        device=torch.device("cpu"),
    )
    assert seen == [1, 2, 3] and records["main"].n_iter == 3


def test_plateau_stop_and_switch_off():
    X, y, model = _linear_task()
    # a constant loss never improves by more than tol
    constant = Phase(
        name="flat",
        step=lambda idx: (model(X[idx]) * 0.0).sum() + 1.0,
        n_samples=X.shape[0],
        modules=[model],
        optimizers=[_engine.make_optimizer(model.parameters(), 0.01)],
        max_iter=50,
        batch_size=16,
        n_iter_no_change=3,
    )
    history = run_phases([constant], rng=_rng(), device=torch.device("cpu"))["main"]
    assert history.stopped_early and history.n_iter == 4
    constant.n_iter_no_change = None
    history = run_phases([constant], rng=_rng(), device=torch.device("cpu"))["main"]
    assert not history.stopped_early and history.n_iter == 50


def test_validation_loss_restores_the_best_weights():
    X, y, model = _linear_task()
    snapshots = []

    def validation():
        snapshots.append(model.weight.detach().clone())
        # the first epoch is the best one by construction
        return float(len(snapshots))

    run_phases(
        [_phase(model, X, y, max_iter=4, validation_loss=validation)],
        rng=_rng(),
        device=torch.device("cpu"),
    )
    assert torch.equal(model.weight, snapshots[0])


def test_manual_phase_lets_the_step_update():
    X, y, model = _linear_task()
    opt = _engine.make_optimizer(model.parameters(), 0.05)
    calls = []

    def step(idx):
        opt.zero_grad()
        loss = ((model(X[idx]).squeeze(1) - y[idx]) ** 2).mean()
        loss.backward()
        opt.step()
        calls.append(1)
        return float(loss.detach())

    phase = Phase(
        name="manual",
        step=step,
        n_samples=X.shape[0],
        modules=[model],
        optimizers=[opt],
        manual=True,
        max_iter=2,
        batch_size=16,
    )
    run_phases([phase], rng=_rng(), device=torch.device("cpu"))
    assert len(calls) == 8  # 2 epochs x 4 batches


def test_nan_loss_names_the_phase_and_the_epoch():
    X, y, model = _linear_task()
    phase = Phase(
        name="boom",
        step=lambda idx: model(X[idx]).sum() * math.nan,
        n_samples=X.shape[0],
        modules=[model],
        optimizers=[_engine.make_optimizer(model.parameters(), 0.01)],
        learning_rate=0.01,
    )
    with pytest.raises(TrainingDivergedError, match=r"boom loss .* epoch 1.*0\.01"):
        run_phases([phase], rng=_rng(), device=torch.device("cpu"))


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown optimizer"):
        _engine.make_optimizer(nn.Linear(2, 2).parameters(), 0.1, kind="lbfgs")


def test_minibatches_cover_every_row_and_merge_a_trailing_single_row():
    gen = torch.Generator().manual_seed(0)
    batches = list(_engine.iter_minibatches(33, 8, gen, torch.device("cpu")))
    assert [len(b) for b in batches] == [8, 8, 8, 9]
    assert sorted(torch.cat(batches).tolist()) == list(range(33))


def test_weighted_minibatches_oversample():
    gen = torch.Generator().manual_seed(0)
    weights = torch.ones(100)
    weights[:5] = 50.0
    cpu = torch.device("cpu")
    idx = torch.cat(list(_engine.iter_minibatches(100, 10, gen, cpu, weights=weights)))
    assert (idx < 5).float().mean() > 0.5


def test_validation_split_sizes():
    tr, va = _engine.train_validation_split(50, 0.2, _rng())
    assert len(va) == 10 and len(tr) == 40
    assert sorted(np.r_[tr, va].tolist()) == list(range(50))


def test_random_state_is_local_and_reproducible():
    before = torch.random.get_rng_state().clone()
    a, b = _rng(3), _rng(3)
    assert torch.equal(
        torch.randn(4, generator=a.cpu), torch.randn(4, generator=b.cpu)
    )
    assert a.numpy.integers(1000) == b.numpy.integers(1000)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_private_default_generator_serves_default_draws_privately():
    before = torch.random.get_rng_state().clone()
    with _engine.private_default_generator(0):
        first = (nn.Linear(4, 3).weight.clone(), torch.rand(2), torch.randperm(5))
    with _engine.private_default_generator(0):
        second = (nn.Linear(4, 3).weight.clone(), torch.rand(2), torch.randperm(5))
    assert torch.equal(torch.random.get_rng_state(), before)
    for x, y in zip(first, second):
        assert torch.equal(x, y)


def test_private_default_generator_is_thread_local():
    """Another thread keeps drawing from the real default generator while
    one thread is inside the context: its draws are not redirected."""
    inside, done = threading.Event(), threading.Event()
    states = {}

    def other():
        inside.wait()
        states["before"] = torch.random.get_rng_state().clone()
        torch.rand(3)
        states["after"] = torch.random.get_rng_state().clone()
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with _engine.private_default_generator(0):
        inside.set()
        done.wait(30)
    thread.join()
    assert not torch.equal(states["before"], states["after"])

"""Determinism: the same random_state gives the same scores whatever the
global seeds, and skad never reads or writes the global random state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from tests._helpers import data, fast_instances, fitted, name

INSTANCES = fast_instances()


def _global_rng_state():
    return torch.random.get_rng_state().clone(), np.random.get_state()


def _assert_same_global_rng(before):
    torch_state, np_state = before
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_scores_do_not_depend_on_global_seeds(estimator):
    X = data(60, 5, seed=3)
    runs = []
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            for seed in (1, 2):
                torch.manual_seed(seed)
                np.random.seed(seed)
                runs.append(clone(estimator).fit(X).score_samples(X))
    finally:
        np.random.set_state(np_state)
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_refit_and_clone_of_fitted_reproduce(estimator):
    X = data(60, 5, seed=4)
    est = clone(estimator).fit(X)
    first = est.score_samples(X)
    np.testing.assert_array_equal(est.fit(X).score_samples(X), first)  # refit
    np.testing.assert_array_equal(clone(est).fit(X).score_samples(X), first)


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_random_state_instance_is_cloned_not_shared(estimator):
    X = data(60, 5, seed=5)
    est = clone(estimator).set_params(random_state=np.random.RandomState(7))
    a = clone(est).fit(X).score_samples(X)
    b = clone(est).fit(X).score_samples(X)
    np.testing.assert_array_equal(a, b)
    other = clone(estimator).set_params(random_state=8).fit(X).score_samples(X)
    assert not np.array_equal(a, other), "random_state has no effect"


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_scoring_leaves_global_rng_untouched(estimator):
    X = data(60, 4, seed=6)
    est = fitted(estimator)
    before = _global_rng_state()
    est.score_samples(X)
    est.decision_function(X)
    est.predict(X)
    _assert_same_global_rng(before)




def test_fits_in_one_thread_never_touch_the_global_rng_another_thread_uses():
    """Another thread drawing from torch's global generator while detectors
    are fitted sees one uninterrupted stream: skad never saves, restores or
    draws from the global state (issue #20: restoring it made the other
    thread repeat hundreds of draws)."""
    import threading

    stop = threading.Event()
    draws = []
    start_state = torch.random.get_rng_state().clone()

    def draw():
        while not stop.is_set():
            draws.append(torch.rand(1))

    thread = threading.Thread(target=draw)
    X = data(80, 5, seed=9)
    thread.start()
    try:
        for est in INSTANCES:
            clone(est).fit(X).score_samples(X)
    finally:
        stop.set()
        thread.join()
    assert len(draws) > 100
    # the same draws as an undisturbed generator from the starting state
    replay = torch.Generator().set_state(start_state)
    expected = torch.rand(len(draws), generator=replay)
    assert torch.equal(torch.cat(draws), expected)


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_torch_tensor_input_is_accepted(estimator):
    X = data(60, 5, seed=10)
    expected = clone(estimator).fit(X).score_samples(X)
    tensor = torch.as_tensor(X).requires_grad_(True)
    got = clone(estimator).fit(tensor).score_samples(tensor)
    np.testing.assert_array_equal(got, expected)

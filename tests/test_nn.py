"""Shared torch blocks: MLP, local-generator dropout and initialisation."""

import torch
from torch import nn

from skad import _nn


def test_mlp_widths_bias_and_norms():
    mlp = _nn.MLP(5, (8, 4), 2, activation="relu", norm="layer")
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linears]
    assert shapes == [(5, 8), (8, 4), (4, 2)]
    assert sum(isinstance(m, nn.LayerNorm) for m in mlp) == 2
    bias_free = _nn.MLP(5, (8,), 2, norm="batch", bias=False)
    assert all(m.bias is None for m in bias_free if isinstance(m, nn.Linear))
    norm = next(m for m in bias_free if isinstance(m, nn.BatchNorm1d))
    assert not norm.affine  # no shift: the network stays bias-free
    assert _nn.MLP(5, (8, 4), None).out_features == 4


def test_hidden_outputs_are_the_blocks():
    mlp = _nn.MLP(3, (6, 5), 2)
    outs = mlp.hidden_outputs(torch.zeros(7, 3))
    assert [o.shape for o in outs] == [torch.Size([7, 6]), torch.Size([7, 5])]


def test_reset_parameters_is_reproducible_from_the_generator():
    a, b = _nn.MLP(4, (6,), 2), _nn.MLP(4, (6,), 2)
    _nn.reset_parameters(a, torch.Generator().manual_seed(1))
    _nn.reset_parameters(b, torch.Generator().manual_seed(1))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    before = torch.random.get_rng_state().clone()
    _nn.reset_parameters(a, torch.Generator().manual_seed(2))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert not torch.equal(next(a.parameters()), next(b.parameters()))


def test_dropout_draws_from_the_installed_generator():
    drop = _nn.Dropout(0.5).train()
    x = torch.ones(1000)
    with _nn.dropout_generator(torch.Generator().manual_seed(0)):
        first = drop(x)
    with _nn.dropout_generator(torch.Generator().manual_seed(0)):
        second = drop(x)
    assert torch.equal(first, second)
    assert 0.3 < (first == 0).float().mean() < 0.7
    assert torch.equal(drop.eval()(x), x)  # identity when scoring


def test_unknown_activation_or_norm_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="Unknown activation"):
        _nn.make_activation("swishy")
    with pytest.raises(ValueError, match="Unknown norm"):
        _nn.MLP(3, (4,), 2, norm="group")

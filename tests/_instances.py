"""Small, fast instances of every skad detector for the common tests."""

from skad import all_estimators

#: Per-class keyword arguments that keep the common checks fast on a CPU.
FAST_PARAMS = {
    "AnoMem": dict(max_iter=3),
    "DeepSAD": dict(max_iter=3),
    "DeepSVDD": dict(max_iter=3),
    "DiscriminatorGuidedGAN": dict(max_iter=3),
    "ESAD": dict(max_iter=3),
    "ReverseDistillation": dict(max_iter=3, pretrain_epochs=2),
    "SLA2P": dict(max_iter=2, n_transforms=8, projection_dim=8),
}


def fast_instances():
    """One fast CPU instance of every public detector."""
    out = []
    for name, cls in all_estimators():
        params = dict(device="cpu", random_state=0)
        params.update(FAST_PARAMS.get(name, dict(max_iter=3)))
        out.append(cls(**params))
    return out

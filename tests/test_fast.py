"""tl_course.models.fast: the folded, channels-last copy computes the plain network's outputs
(within 1e-4), leaves the original alone, and anything it cannot handle falls back to the plain
network."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from tl_course.data import ImageDataset
from tl_course.features import extract_features, feature_cache_path, stage_features
from tl_course.models import fast
from tl_course.models.backbones import load_backbone
from tl_course.models.fast import EAGER, FAST, OPENVINO, fast_copy, inference_model, openvino_available


@pytest.fixture(scope="module")
def bb():
    return load_backbone("efficientnet_lite0", image_size=64)


@pytest.fixture
def photos(isolated_env):
    """Six smooth random colour images (not constant: BatchNorm statistics matter)."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (6, 12, 14, 3)).astype(np.float32)
    imgs = np.kron(base, np.ones((1, 6, 6, 1), np.float32))[:, :70, :80]
    imgs = np.clip(imgs + rng.normal(0, 20, imgs.shape), 0, 255).astype(np.uint8)
    return ImageDataset(imgs, np.arange(6) % 2, ["a", "b"])


def test_fast_copy_folds_every_batchnorm_and_leaves_the_original_alone(bb):
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    bb.model.train()
    copy = fast_copy(bb.model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.network.modules())
    assert bb.model.training and not copy.training
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bb.model.modules()) > 40
    after = bb.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    bb.model.eval()


def test_fast_features_equal_plain_features(bb, photos, caplog):
    with caplog.at_level(logging.DEBUG, logger="tl_course"):
        X_fast, y_fast = extract_features(bb, photos, batch_size=4, cache=False, progress=False, fast=True, runtime=True)
    assert f"forward path {OPENVINO if openvino_available() else FAST}" in caplog.text
    X_plain, y_plain = extract_features(bb, photos, batch_size=4, cache=False, progress=False, fast=False)
    assert torch.equal(y_fast, y_plain)
    assert X_fast.abs().max() > 0.1  # real features, not zeros
    assert float((X_fast - X_plain).abs().max()) <= 1e-4
    assert not torch.equal(X_fast, X_plain)  # another computation (folded weights), not the same one


def test_fast_stage_features_equal_plain_ones(bb, photos):
    fast_feats, _ = stage_features(bb, photos, grid=2, cache=False, progress=False, fast=True)
    plain_feats, _ = stage_features(bb, photos, grid=2, cache=False, progress=False, fast=False)
    assert len(fast_feats) == len(plain_feats) == len(bb.stages)
    for a, b in zip(fast_feats, plain_feats):
        assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-4 * max(1.0, float(b.abs().max()))


def test_fast_and_plain_features_are_cached_apart(bb, photos):
    fast = dict(fast=True, runtime=True)
    assert feature_cache_path(bb, photos, **fast) != feature_cache_path(bb, photos, fast=False)
    assert feature_cache_path(bb, photos) == feature_cache_path(bb, photos, **fast), "the fast path is the default"
    X_fast, _ = extract_features(bb, photos, progress=False, **fast)
    X_plain, _ = extract_features(bb, photos, progress=False, fast=False)
    assert feature_cache_path(bb, photos, **fast).exists() and feature_cache_path(bb, photos, fast=False).exists()
    assert not torch.equal(X_fast, X_plain)


class _NormFirst(nn.Module):
    """Registers conv before bn but applies bn first: folding by registration order would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 2)

    def forward(self, x):
        return self.conv(self.bn(x)).mean((2, 3))


def test_a_wrong_fold_is_caught_and_the_plain_network_runs():
    torch.manual_seed(0)
    model = _NormFirst().eval()
    x = torch.randn(4, 3, 8, 8)
    run, path = inference_model(model, x[:2])
    assert path == EAGER and run is model
    assert not torch.allclose(fast_copy(model)(x), model(x), atol=1e-4)  # the check had something to catch


def test_openvino_runs_when_installed_and_its_conversion_is_cached(bb, photos, isolated_env, caplog, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr(fast, "_COMPILED", {})  # compiled by an earlier test in this process: convert again
    plain, _ = extract_features(bb, photos, batch_size=4, cache=False, progress=False, fast=False)
    x = torch.stack([bb.transform(photos.image(i)) for i in range(3)])
    run, path = inference_model(bb.model.eval(), x[:2], runtime=True)
    assert path == OPENVINO
    with torch.no_grad():
        assert float((run(x) - bb.model(x)).abs().max()) <= 1e-4
    (xml,) = (isolated_env / "runtimes").glob("*.xml")
    assert xml.with_suffix(".bin").exists()
    with caplog.at_level(logging.DEBUG, logger="tl_course"):
        X, _ = extract_features(bb, photos, batch_size=4, cache=False, progress=False, fast=True, runtime=True)
    assert f"forward path {OPENVINO}" in caplog.text
    assert float((X - plain).abs().max()) <= 1e-4
    assert len(list((isolated_env / "runtimes").glob("*.xml"))) == 1  # the cached conversion was reused


def test_a_failing_runtime_falls_back_to_the_fast_copy(bb, photos, monkeypatch, caplog):
    def broken(model, sample):
        raise RuntimeError("no runtime here")

    monkeypatch.setattr(fast, "openvino_model", broken)
    x = torch.stack([bb.transform(photos.image(i)) for i in range(2)])
    with caplog.at_level(logging.DEBUG, logger="tl_course"):
        _, path = inference_model(bb.model.eval(), x, runtime=True)
    assert path == FAST
    if openvino_available():
        assert "no runtime here" in caplog.text


def test_a_failing_fast_path_falls_back_silently(bb, photos, monkeypatch, caplog):
    plain, _ = extract_features(bb, photos, batch_size=4, cache=False, progress=False, fast=False)

    def broken(*args):
        raise RuntimeError("no fast path here")

    monkeypatch.setattr(fast, "fast_copy", broken)
    monkeypatch.setattr(fast, "openvino_model", broken)
    with caplog.at_level(logging.DEBUG, logger="tl_course"):
        X, _ = extract_features(bb, photos, batch_size=4, cache=False, progress=False, fast=True, runtime=True)
        feats, _ = stage_features(bb, photos, cache=False, progress=False, fast=True)
    assert torch.equal(X, plain)  # exactly the plain network's computation
    assert f"forward path {EAGER}" in caplog.text and "no fast path here" in caplog.text
    assert torch.allclose(feats[-1], plain, atol=1e-6)


def test_the_converters_torch_jit_deprecation_warnings_are_filtered_for_good():
    """OpenVINO's converter calls torch.jit.trace, whose FutureWarning used to leak into notebook
    outputs when the decoding thread left its own ``catch_warnings`` mid-conversion: the filter is
    installed at import, outside any ``catch_warnings``. (Checked in a fresh interpreter: pytest
    resets the warning filters around each test.)"""
    import subprocess
    import sys

    code = (
        "import warnings, tl_course.models.fast\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.warn('`torch.jit.trace` is deprecated. Please switch to `torch.compile`.', FutureWarning)\n"
        "    warnings.warn('`torch.jit.trace_method` is deprecated. Please switch to `torch.compile`.', FutureWarning)\n"
        "    warnings.warn('something else is deprecated', FutureWarning)\n"
        "print([str(w.message) for w in caught])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['something else is deprecated']", out.stdout

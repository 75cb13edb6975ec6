"""A frozen network's forward pass made about twice as fast on a CPU without changing what it
computes beyond float rounding: an inference-only copy with every BatchNorm folded into the
convolution before it (in eval mode a BatchNorm is a per-channel affine map, so it can be
merged into that convolution's weights and bias) and weights and inputs in channels-last
memory layout (the layout the CPU convolution kernels are fastest in).

Where the optional OpenVINO runtime is installed (``pip install openvino``), a network that
maps a batch to one tensor (pooled features) can run there instead (``runtime=True``): about
twice as fast again on a CPU. Its converted model is cached on disk (``TL_COURSE_DATA/runtimes``,
keyed by the network's structure and weights), since converting takes seconds.

Every fast path is checked against the original on a sample of the real input; if the two
disagree by more than ``tol`` (a module this code does not understand), or anything fails, the
next path is tried, down to the original network: plain PyTorch is the path that always works.
Which path ran is logged at debug level and returned; :func:`planned_path` says beforehand which
one will run when nothing fails (part of feature-cache keys).

Usage::

    from tl_course.models.fast import inference_model
    run, path = inference_model(backbone.model, x[:2])   # path: "bnfold+channels_last" or "eager"
    feats = run(x)
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

# OpenVINO's converter traces the network with torch.jit, which torch deprecates with a
# FutureWarning that is no concern of the learner's. A filter for just those messages, installed
# at import: a ``catch_warnings`` block around the conversion is not enough, because another
# thread (the image decoder) leaving its own ``catch_warnings`` restores the filters it saved.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning)

FAST = "bnfold+channels_last"
"""Name of the fast path (part of the feature-cache keys of what it computes)."""
EAGER = "eager"
"""Name of the plain path: the network itself, in eval mode."""
OPENVINO = "openvino"
"""Name of the optional runtime path (OpenVINO, float32 inference, as many threads as PyTorch)."""


def openvino_available() -> bool:
    """Whether the optional OpenVINO runtime is installed.

    Usage: ``if openvino_available(): ...``
    """
    return importlib.util.find_spec("openvino") is not None


def planned_path(enabled: bool = True, runtime: bool = False) -> str:
    """The path :func:`inference_model` takes with these arguments when nothing fails.

    Usage: ``key = f"forward={planned_path(True, runtime=True)}"``
    """
    if not enabled:
        return EAGER
    return OPENVINO if runtime and openvino_available() else FAST


def _conv_bn_pairs(model: nn.Module):
    """``(parent, conv, bn_name, bn)`` for every BatchNorm registered right after a Conv2d of
    the same width (module registration order: the course's backbones register each conv just
    before the BatchNorm that normalises its output; the numerical check guards the rest)."""
    for parent in model.modules():
        prev = None
        for name, child in parent.named_children():
            if (isinstance(prev, nn.Conv2d) and isinstance(child, nn.BatchNorm2d)
                    and child.running_mean is not None and prev.out_channels == child.num_features
                    and (type(child) is nn.BatchNorm2d or hasattr(child, "act"))):
                yield parent, prev, name, child
            prev = child


def _after_norm(bn: nn.BatchNorm2d) -> nn.Module:
    """What remains of a BatchNorm once folded: nothing, or (timm's ``BatchNormAct2d``) its
    dropout and activation."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    return nn.Sequential(getattr(bn, "drop", nn.Identity()), bn.act)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution before it, **in place** (use on a
    copy): ``conv`` then ``bn`` becomes one ``conv`` with scaled weights and a bias. Returns
    ``model``.

    Usage: ``fused = fold_batchnorm(copy.deepcopy(model).eval())``
    """
    for parent, conv, name, bn in list(_conv_bn_pairs(model)):
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps) if bn.affine \
            else 1 / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() if bn.affine else torch.zeros_like(scale)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        w = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
        conv.weight = nn.Parameter(w.to(conv.weight.dtype), requires_grad=False)
        conv.bias = nn.Parameter(((bias - bn.running_mean.double()) * scale + shift).to(conv.weight.dtype),
                                 requires_grad=False)
        setattr(parent, name, _after_norm(bn))
    return model


class _ChannelsLast(nn.Module):
    """Runs ``network`` on its input in channels-last layout; outputs are made contiguous again
    (the layout of the plain path), so callers see no difference. ``network`` keeps the module
    names of the network it was copied from."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        out = self.network(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
        return out.contiguous() if isinstance(out, torch.Tensor) else out


def fast_copy(model: nn.Module) -> nn.Module:
    """An inference-only copy of ``model`` (left untouched): eval mode, BatchNorm folded,
    channels-last; ``.network`` is the folded copy, with the original's module names.
    Unchecked: prefer :func:`inference_model`.

    Usage: ``fast = fast_copy(bb.model)``
    """
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    fold_batchnorm(fast)
    return _ChannelsLast(fast.to(memory_format=torch.channels_last)).eval()


def _digest(model: nn.Module) -> str:
    """sha256 of ``model``'s structure and every parameter and buffer."""
    h = hashlib.sha256(repr(model).encode())
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


_COMPILED: dict = {}
"""The networks compiled by :func:`openvino_model` in this process, keyed by their digest (the
same network under another ``TL_COURSE_DATA`` is not compiled again), least recently used first."""
_KEEP_COMPILED = 4


class _OpenVINO:
    """A network compiled by OpenVINO for the CPU: batch (float32 tensor) -> float32 tensor."""

    def __init__(self, compiled):
        self.compiled = compiled

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.compiled([x.detach().cpu().float().contiguous().numpy()])[0].copy())


def openvino_model(model: nn.Module, sample: torch.Tensor):
    """``model`` (eval mode, one tensor in, one tensor out) compiled by OpenVINO for the CPU in
    float32 with ``torch.get_num_threads()`` threads, its converted form cached on disk.
    Unchecked: prefer :func:`inference_model`.

    Usage: ``run = openvino_model(bb.model.eval(), x[:2]); feats = run(x)``
    """
    import openvino as ov

    from .. import cache as disk

    digest = _digest(model)
    xml = disk.cache_path("runtimes", "openvino", digest, ov.__version__, suffix=".xml")
    memo = (digest, ov.__version__, torch.get_num_threads())
    if memo in _COMPILED:  # compiled before in this process (same structure and weights)
        _COMPILED[memo] = _COMPILED.pop(memo)  # the most recently used last
        return _COMPILED[memo]
    core = ov.Core()
    converted = None
    if xml.exists() and xml.with_suffix(".bin").exists():
        try:
            converted = core.read_model(str(xml), str(xml.with_suffix(".bin")))
        except Exception as err:  # noqa: BLE001 - an unreadable cache is converted again
            log.debug("cached OpenVINO model %s unreadable (%s): converting again", xml, err)
    if converted is None:
        with warnings.catch_warnings():  # the converter's tracing warns about deprecations
            warnings.simplefilter("ignore")
            converted = ov.convert_model(model, example_input=sample)
        with tempfile.TemporaryDirectory(dir=xml.parent if xml.parent.exists() else None) as tmp:
            ov.save_model(converted, str(Path(tmp) / "m.xml"), compress_to_fp16=False)
            for suffix in (".bin", ".xml"):  # the .xml last: its presence means both are complete
                disk.write_atomically(xml.with_suffix(suffix),
                                      lambda out, s=suffix: shutil.copyfile(Path(tmp) / f"m{s}", out))
    config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"}
    while len(_COMPILED) >= _KEEP_COMPILED:  # a network's compiled form holds its weights: keep a few
        _COMPILED.pop(next(iter(_COMPILED)))  # the least recently used
    _COMPILED[memo] = _OpenVINO(core.compile_model(converted, "CPU", config))
    return _COMPILED[memo]


def _agrees(model, candidate, sample, tol: float) -> tuple[bool, float]:
    """Whether ``candidate`` computes ``model``'s outputs on ``sample`` within ``tol`` (max abs,
    relative to the outputs' scale when that exceeds 1), and the largest difference."""
    want, got = model(sample), candidate(sample)
    tensors = list(zip(*(t if isinstance(t, (list, tuple)) else [t] for t in (want, got))))
    worst = max(float((a.float() - b.float().to(a.device)).abs().max()) for a, b in tensors)
    scale = max(1.0, max(float(a.float().abs().max()) for a, _ in tensors))
    return worst <= tol * scale, worst


@torch.no_grad()
def inference_model(model: nn.Module, sample: torch.Tensor, *, enabled: bool = True, runtime: bool = False,
                    tol: float = 1e-4) -> tuple[nn.Module, str]:
    """``(run, path)``: a callable computing what ``model`` (in eval mode) computes: with
    ``runtime=True`` and OpenVINO installed, the OpenVINO-compiled network (CPU only); else the
    fast copy of :func:`fast_copy`, each used only when it agrees with ``model`` on ``sample``
    within ``tol`` (max abs, relative to the outputs' scale when that exceeds 1); else ``model``
    itself. ``path`` says which ran: :data:`OPENVINO`, :data:`FAST` or :data:`EAGER`.
    ``enabled=False``: always ``model``.

    Usage: ``run, path = inference_model(bb.model.eval(), x[:2]); y = run(x)``
    """
    if not enabled:
        return model, EAGER
    candidates = [(FAST, fast_copy)]
    if runtime and sample.device.type == "cpu" and openvino_available():
        candidates.insert(0, (OPENVINO, lambda m: openvino_model(m, sample)))
    for path, make in candidates:
        try:
            run = make(model)
            ok, worst = _agrees(model, run, sample, tol)
        except Exception as err:  # noqa: BLE001 - any failure means the next path
            log.debug("%s forward unavailable (%s: %s)", path, type(err).__name__, err)
            continue
        if ok:
            log.debug("%s forward, max abs difference %.3g on the sample", path, worst)
            return run, path
        log.debug("%s forward differs by %.3g (tolerance %g x scale): not used", path, worst, tol)
    return model, EAGER

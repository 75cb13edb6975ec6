"""Benchmark: how long the frozen sentence encoder (all-MiniLM-L6-v2) takes to embed all 3,000
sentences of ``sentiment:all``, with a cold and then a warm feature cache.

Measured in one fresh process, in a fresh ``TL_COURSE_DATA`` (temporary folder): (1) importing
transformers and loading the verified model (zip hash check + extraction included), (2) encoding
the 3,000 sentences with bucketing by token length (cold feature cache: computed and written),
(3) the same without bucketing (every batch padded to its longest sentence in input order),
(4) reading them back from the cache (warm). Wall-clock seconds, plus the process's CPU seconds
(all threads together) for the cold encoding, which a busy machine inflates much less. Threads: ``--threads`` for PyTorch and BLAS (2 by
default, the course machine's cores); the numbers depend on what else the machine is running.

Usage::

    .venv/bin/python benchmarks/text_encoding.py                 # 2 threads, batch 64
    .venv/bin/python benchmarks/text_encoding.py --threads 1 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ["TL_COURSE_DATA"] = tempfile.mkdtemp(prefix="tl_text_bench_")

    import torch

    torch.set_num_threads(args.threads)
    from tl_course import cache
    from tl_course.data import load_dataset
    from tl_course.models.text import extract_text_features, load_text_encoder

    data = load_dataset("sentiment:all")
    texts = data.train.texts + data.val.texts + data.test.texts
    targets = list(data.train.targets) + list(data.val.targets) + list(data.test.targets)
    from tl_course.data import TextDataset

    full = TextDataset(texts, targets, data.classes)

    t0 = time.perf_counter()
    encoder = load_text_encoder()
    t_load = time.perf_counter() - t0

    t0, c0 = time.perf_counter(), time.process_time()
    X, _ = extract_text_features(encoder, full, batch_size=args.batch_size, progress=False)
    t_cold, c_cold = time.perf_counter() - t0, time.process_time() - c0

    t0 = time.perf_counter()
    X_plain = encoder.encode(texts, batch_size=args.batch_size, progress=False, bucket=False)
    t_plain = time.perf_counter() - t0

    t0 = time.perf_counter()
    X_warm, _ = extract_text_features(encoder, full, batch_size=args.batch_size, progress=False)
    t_warm = time.perf_counter() - t0

    lengths = encoder.token_lengths(texts)
    result = {
        "sentences": len(texts), "threads": args.threads, "batch_size": args.batch_size,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "load_avg_before": os.getloadavg(),
        "model_load_s (import + verify + extract + load)": round(t_load, 2),
        "encode_cold_bucketed_s": round(t_cold, 2),
        "encode_cold_bucketed_cpu_s (all threads)": round(c_cold, 2),
        "encode_unbucketed_s": round(t_plain, 2),
        "cached_read_s": round(t_warm, 3),
        "sentences_per_s (bucketed)": round(len(texts) / t_cold, 1),
        "tokens mean / max": (round(sum(lengths) / len(lengths), 1), max(lengths)),
        "max_abs_diff bucketed vs unbucketed": float((X - X_plain).abs().max()),
        "warm equals cold": bool(torch.equal(X, X_warm)),
        "cache_version": cache.VERSION,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        cache.write_json(args.json, result)


if __name__ == "__main__":
    main()

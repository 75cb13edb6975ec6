"""Frozen-feature extraction speed: the obvious torchvision pipeline against the course's, in one
process, on the same images (ants vs bees, 398 photos), cold (no feature cache), with the same
backbone (EfficientNet-Lite0) and the same number of threads.

- obvious: ``ImageFolder`` + ``Resize(256)``/``CenterCrop(224)`` + a ``DataLoader`` with 2 workers,
  batch 64, eager forward under ``torch.no_grad``;
- course: ``tl_course.features.extract_features`` with ``cache=False`` (JPEGs decoded at reduced
  size, decoding in a thread one batch ahead of the forward pass, ``inference_mode``, and the
  forward pass through OpenVINO where it is installed, else a BatchNorm-folded, channels-last
  copy of the network, see ``tl_course.models.fast``); with ``--plain`` also ``runtime=False``
  (PyTorch only: the folded copy) and ``fast=False`` (the plain network).

The pipelines run interleaved (obvious, course, [plain], obvious, course, ...) ``--repeat`` times,
so that a machine shared with other work slows them alike; the best and the median of the
repetitions are printed. The one-time set-up of the fast path (converting the network for
OpenVINO, cached on disk afterwards) is timed once before and printed apart. It also splits the course's time into decoding + preprocessing alone
(one thread, no forward pass) and the forward pass alone (on the decoded batches; its set-up,
which checks the fast path against the plain network on two images, apart), and prints the
largest difference between the fast and the plain forward pass on those batches, and the load
average before and after.

Usage::

    TL_COURSE_MIRROR=../shared/data .venv/bin/python benchmarks/extraction_speed.py --threads 2 --repeat 3 --plain --runtimes
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions of each pipeline")
    parser.add_argument("--plain", action="store_true", help="also time the course's pipeline with fast=False")
    parser.add_argument("--runtimes", action="store_true",
                        help="also time the frozen forward pass alone in each runtime: eager PyTorch, "
                             "BatchNorm folded + channels-last, torch.compile, OpenVINO, ONNX Runtime (if installed)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import torch
    from torchvision import datasets, transforms as T

    from tl_course.data import load_dataset
    from tl_course.features import extract_features, preprocessed_batches
    from tl_course.models.backbones import load_backbone
    from tl_course.models.fast import inference_model

    torch.set_num_threads(args.threads)
    data = load_dataset("hymenoptera")
    backbone = load_backbone("efficientnet_lite0")
    model = backbone.model.eval()
    splits = (data.train, data.val)
    n = sum(len(s) for s in splits)
    out = {"images": n, "threads": args.threads, "repeat": args.repeat, "torch": torch.__version__,
           "load_before": os.getloadavg()[0]}

    prep = backbone.preprocessing
    tf = T.Compose([T.Resize(256, interpolation=T.InterpolationMode(prep.interpolation)), T.CenterCrop(224),
                    T.ToTensor(), T.Normalize(prep.mean, prep.std)])
    root = data.train.root.parent

    def obvious():
        with torch.no_grad():
            for split in ("train", "val"):
                loader = torch.utils.data.DataLoader(datasets.ImageFolder(root / split, tf), batch_size=64,
                                                     num_workers=2)
                for x, _ in loader:
                    model(x)

    def course(fast=True, runtime=True):
        for split in splits:
            extract_features(backbone, split, cache=False, progress=False, fast=fast, runtime=runtime)

    pipelines = {"obvious": obvious, "course": course}
    if args.plain:
        pipelines["course_pytorch_only"] = lambda: course(runtime=False)
        pipelines["course_plain_forward"] = lambda: course(fast=False)
    sample = next(iter(preprocessed_batches(backbone, data.val)))[0][:2]
    start = time.perf_counter()
    with torch.inference_mode():
        _, setup_path = inference_model(model, sample, runtime=True)
    out["fast_path_setup_seconds_first_call"] = time.perf_counter() - start
    seconds = {name: [] for name in pipelines}
    decode, forward, setup = [], [], []
    for _ in range(args.repeat):
        for name, run in pipelines.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
        # where the course's time goes: decoding alone, then the forward pass alone
        start = time.perf_counter()
        batches = [x for split in splits for x, _ in preprocessed_batches(backbone, split)]
        decode.append(time.perf_counter() - start)
        with torch.inference_mode():
            start = time.perf_counter()
            fast, path = inference_model(model, batches[0][:2], runtime=True)
            setup.append(time.perf_counter() - start)
            start = time.perf_counter()
            for x in batches:
                fast(x)
            forward.append(time.perf_counter() - start)
    with torch.inference_mode():
        diff = max(float((fast(x) - model(x)).abs().max()) for x in batches[:4])

    for name, values in seconds.items():
        out[f"{name}_seconds_best"] = min(values)
        out[f"{name}_seconds_median"] = statistics.median(values)
        out[f"{name}_images_per_second"] = n / min(values)
    out["speed-up (best/best)"] = min(seconds["obvious"]) / min(seconds["course"])
    out["speed-up (median/median)"] = statistics.median(seconds["obvious"]) / statistics.median(seconds["course"])
    out["course_decode_seconds_best"] = min(decode)
    out["course_forward_seconds_best"] = min(forward)
    out["course_forward_setup_seconds_best"] = min(setup)
    out["course_forward_path"] = path
    out["fast_vs_plain_forward_max_abs_diff"] = diff
    if args.runtimes:
        out["runtimes"] = compare_runtimes(model, batches, args.repeat)
    out["load_after"] = os.getloadavg()[0]
    out["seconds_all_repetitions"] = {name: [round(v, 2) for v in values] for name, values in seconds.items()}
    print(json.dumps({k: round(v, 6 if "diff" in k else 3) if isinstance(v, float) else v for k, v in out.items()},
                     indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


def compare_runtimes(model, batches, repeat: int) -> dict:
    """The frozen forward pass alone, on the same decoded batches, in each runtime: best seconds
    of ``repeat`` passes over all batches, the one-time set-up (conversion / compilation), and the
    largest difference from eager PyTorch's features. A runtime that is not installed or fails is
    reported with its error instead."""
    import tempfile

    import torch

    from tl_course.models.fast import fast_copy, openvino_model

    def onnxruntime_model(m, sample):
        import onnxruntime as ort

        path = os.path.join(tempfile.mkdtemp(), "model.onnx")
        torch.onnx.export(m, (sample,), path, input_names=["x"], output_names=["f"],
                          dynamic_axes={"x": {0: "n"}}, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])

    makers = {
        "eager": lambda m, x: m,
        "bnfold+channels_last": lambda m, x: fast_copy(m),
        "torch.compile (inductor, of the folded copy)": lambda m, x: torch.compile(fast_copy(m), dynamic=False),
        "openvino": lambda m, x: openvino_model(m, x),
        "onnxruntime": onnxruntime_model,
    }
    results = {}
    with torch.inference_mode():
        reference = [model(x) for x in batches]
        for name, make in makers.items():
            try:
                start = time.perf_counter()
                run = make(model, batches[0])
                outputs = [run(x) for x in batches]  # the first pass includes compilation / warm-up
                setup = time.perf_counter() - start
                best = float("inf")
                for _ in range(repeat):
                    start = time.perf_counter()
                    for x in batches:
                        run(x)
                    best = min(best, time.perf_counter() - start)
                diff = max(float((o - r).abs().max()) for o, r in zip(outputs, reference))
                n = sum(len(x) for x in batches)
                results[name] = {"seconds_best": best, "images_per_second": n / best,
                                 "first_pass_seconds (set-up included)": setup, "max_abs_diff_vs_eager": diff}
            except Exception as exc:  # not installed, or this runtime cannot take the network
                results[name] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"}
            print(f"runtime {name}: {results[name]}", flush=True)
    eager = results["eager"].get("seconds_best")
    for r in results.values():
        if eager and "seconds_best" in r:
            r["speed-up vs eager"] = eager / r["seconds_best"]
    return results


if __name__ == "__main__":
    main()

"""The ``tl-course`` command.

Usage::

    tl-course info                       # versions, device, which backbones/datasets work offline
    tl-course course [--out build/course] [--lang zh] [--jobs N] [--threads N]
    tl-course run NOTEBOOK [-p NAME VALUE ...] [--out build/run]
    tl-course train DATA [--backbone NAME] [--mode frozen|finetune] [--epochs N] [--seed S] --out DIR
    tl-course predict DIR PATH...             # images (or text files, for a text model)
    tl-course predict DIR --text "..." [--text ...]
    tl-course student OUT_DIR [--lang zh]
    tl-course book [--out build/book] [--lang en zh]   # the course as a static HTML book
    tl-course translations [--stale | --stubs | --mark-guide] [NOTEBOOK...]   # state of the Chinese edition
    tl-course notebooks [--data-dependent]   # the course notebooks, one path per line
    tl-course execute NOTEBOOK...            # execute in place, as committed outputs are made
    tl-course slides                         # slide metadata on every notebook
"""
from __future__ import annotations

import argparse
import ast
import csv
import sys


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse turns the error into a usage message, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _info(_args) -> int:
    import platform

    import torch

    from . import __version__, settings
    from .data import dataset_table
    from .models.backbones import backbone_table
    from .models.text import text_model_table

    print(f"tl_course {__version__}, Python {platform.python_version()}, torch {torch.__version__}")
    print(f"device: {settings.device()}  (CUDA available: {torch.cuda.is_available()})")
    print(f"TL_COURSE_DATA={settings.data_dir()}  TL_COURSE_MIRROR={settings.mirror_dir()}  "
          f"TL_COURSE_OFFLINE={int(settings.offline())}")
    print("backbones:")
    for row in backbone_table():
        print(f"  {row['name']:<20} {'yes' if row['available offline now'] else 'no ':<4} {row['how']}")
    print("text models:")
    for row in text_model_table():
        print(f"  {row['name']:<20} {'yes' if row['available offline now'] else 'no ':<4} {row['how']}")
    print("datasets:")
    for row in dataset_table():
        print(f"  {row['name']:<20} {'yes' if row['available offline now'] else 'no ':<4} {row['how']}")
    return 0


def _course(args) -> int:
    from .course.notebooks import course_notebooks, run_course

    if args.lang == "en":
        rows = run_course(args.out or "build/course", jobs=args.jobs, threads=args.threads)
    else:
        import tempfile

        from .course.translation import write_translated

        originals = course_notebooks()
        with tempfile.TemporaryDirectory(prefix=f"tl-course-{args.lang}-") as tmp:
            translated = write_translated(tmp, args.lang, originals,
                                          warn=lambda m: print(m, file=sys.stderr))
            # run in the English notebooks' folder: their relative paths (../build/...) hold
            rows = run_course(args.out or f"build/course-{args.lang}", translated,
                              cwd=originals[0].parent if originals else None, jobs=args.jobs, threads=args.threads)
    return 0 if all(r["ok"] for r in rows) else 1


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _run(args) -> int:
    from pathlib import Path

    from .course.notebooks import result_lines, run_notebook

    params = {name: _parse_value(value) for name, value in (args.parameter or [])}
    if (Path(args.out).resolve() / Path(args.notebook).name) == Path(args.notebook).resolve():
        raise CliError(f"--out {args.out} would overwrite the notebook itself; choose another folder "
                       "(to execute a notebook in place, use `tl-course execute`).")
    out, seconds = run_notebook(args.notebook, args.out, params, progress=True)
    print(f"executed {out} in {seconds:.1f} s")
    for line in result_lines(out):
        print(f"  {line}")
    return 0


def _train(args) -> int:
    import warnings

    from .classifier import train_classifier
    from .data.folder import skip_line

    with warnings.catch_warnings():  # skipped files are listed below, one line each, not as a warning
        warnings.filterwarnings("ignore", message=r"\d+ file\(s\) skipped under", category=UserWarning)
        clf = train_classifier(args.data, backbone=args.backbone, mode=args.mode, epochs=args.epochs,
                               seed=args.seed, out_dir=args.out, image_size=args.image_size)
    m = clf.metrics
    for skip in m.get("skipped", []):
        print(f"tl-course train: skipped {skip_line(skip)}", file=sys.stderr)
    what = "texts" if m.get("modality") == "text" else "images"
    test = (f"; test accuracy {m['test_accuracy']:.4f}, balanced {m['test_balanced_accuracy']:.4f}, "
            f"AUC {m['test_auc']:.4f} on {m['n_test']}" if "test_accuracy" in m else "")
    kept = f" [{m['finetune_kept']}]" if "finetune_kept" in m else ""
    kept += f"; {m['n_skipped']} file(s) skipped (listed above)" if m.get("n_skipped") else ""
    print(f"{m['mode']} {m.get('backbone', m.get('encoder'))} on {m['dataset']} ({m['data_source']}): "
          f"val_accuracy {m['val_accuracy']:.4f} on {m['n_val']} {what}{test}, trained on {m['n_train']} "
          f"in {m['train_seconds']:.1f} s{kept}; wrote {args.out}/model.pt and {args.out}/metrics.json")
    return 0


def _predict(args) -> int:
    from .classifier import load_classifier, predict_paths

    if not args.paths and not args.text:
        raise CliError("give image files or folders to classify, or --text for a text model.")
    clf = load_classifier(args.model_dir)
    writer = csv.writer(sys.stdout, lineterminator="\n")  # quoted as needed: commas, quotes, newlines
    if clf.modality == "text":
        from .text_classifier import read_texts

        texts = list(args.text or []) + [t for path in args.paths for t in read_texts(path)]
        probs = clf.predict_texts(texts)
        for text, row in zip(texts, probs):
            i = int(row.argmax())
            writer.writerow([text, clf.classes[i], f"{float(row[i]):.4f}"])
        return 0
    if args.text:
        raise CliError(f"{args.model_dir} holds an image classifier; --text needs a text model "
                       "(train one with `tl-course train sentiment:yelp --out DIR`).")
    errors: list[str] = []
    for path, label, prob in predict_paths(clf, args.paths, errors):
        writer.writerow([str(path), label, f"{prob:.4f}"])
        sys.stdout.flush()
    for message in errors:
        print(f"tl-course predict: skipped: {message}", file=sys.stderr)
    return 2 if errors else 0


def _student(args) -> int:
    from .course.student import write_student_edition

    if args.lang == "en":
        written = write_student_edition(args.out_dir)
    else:
        import tempfile

        from .course.translation import write_translated

        with tempfile.TemporaryDirectory(prefix=f"tl-course-{args.lang}-") as tmp:
            translated = write_translated(tmp, args.lang, warn=lambda m: print(m, file=sys.stderr))
            written = write_student_edition(args.out_dir, translated)
    for path in written:
        print(path)
    return 0


def _book(args) -> int:
    from .course.book import build_book

    seconds = build_book(args.out, tuple(args.lang), jobs=args.jobs,
                         warn=lambda m: print(m, file=sys.stderr))
    for lang, s in seconds.items():
        where = args.out if lang == "en" else f"{args.out}/{lang}"
        print(f"book ({lang}): {where}/index.html in {s:.1f} s")
    return 0


def _translations(args) -> int:
    from pathlib import Path

    from .course.notebooks import course_notebooks
    from .course.translation import (catalogue_path, document_path, document_status, mark_document,
                                     translation_status, write_stubs)

    notebooks = [Path(p) for p in args.notebooks] or course_notebooks()
    guide = _root() / "docs" / "guide.md"
    if args.mark_guide:
        changed = mark_document(guide, args.lang)
        print(f"{document_path(guide, args.lang)}: {changed} section marker(s) updated")
        return 0
    documents = [] if args.notebooks or not guide.is_file() else [guide]
    pending = 0
    for nb in notebooks + documents:
        if nb in documents:
            rows = document_status(nb, args.lang)
            if args.stubs:
                todo = [r for r in rows if r.state in ("stale", "missing")]
                pending += len(todo)
                for r in todo:
                    print(f"{r.notebook}: section {r.cell_id!r} is {r.state}: translate it, then run "
                          "`tl-course translations --mark-guide`")
                continue
        else:
            rows = translation_status(nb, args.lang)
        todo = [r for r in rows if r.state in ("stale", "missing")]
        pending += len(todo)
        if args.stubs:
            if todo or any(r.state == "orphan" for r in rows):
                write_stubs(nb, args.lang)
                print(f"{catalogue_path(nb, args.lang)}: {len(todo)} entr{'y' if len(todo) == 1 else 'ies'} "
                      "marked todo = true (translate `text`, then delete the `todo` and `en` lines)")
            continue
        if args.stale:
            for r in rows:
                if r.state != "current":
                    what = "section" if nb in documents else "cell"
                    print(f"--- {r.notebook} {what} {r.cell_id}: {r.state}")
                    if r.english:
                        print(r.english)
            continue
        counts = {s: sum(r.state == s for r in rows) for s in ("current", "stale", "missing", "orphan")}
        print(f"{nb.name:<40} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    if args.stubs:
        return 0
    if pending:
        print(f"{pending} markdown cell(s) or guide section(s) need a translation: `tl-course translations "
              "--stale` lists them with their English; `--stubs` writes catalogue entries to fill in.",
              file=sys.stderr)
    return 1 if pending else 0


def _notebooks(args) -> int:
    from .course.notebooks import course_notebooks, data_notebooks

    for path in (data_notebooks() if args.data_dependent else course_notebooks()):
        print(path.relative_to(path.parent.parent) if path.parent.parent == _root() else path)
    return 0


def _root():
    from pathlib import Path

    from . import settings

    return settings.project_root() or Path.cwd()


def _execute(args) -> int:
    from .course.notebooks import execute_in_place

    for nb in args.notebooks:
        print(f"executing {nb} ...", flush=True)
        print(f"  done in {execute_in_place(nb, threads=args.threads):.1f} s", flush=True)
    return 0


def _slides(_args) -> int:
    from .course.notebooks import add_slide_metadata

    for path in add_slide_metadata():
        print(f"slide metadata added: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tl-course", description="Transfer-learning course tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="environment, device, offline availability").set_defaults(fn=_info)
    p = sub.add_parser("course", help="execute every notebook headless and summarise")
    p.add_argument("--out", default=None, help="default: build/course (build/course-LANG)")
    p.add_argument("--lang", choices=["en", "zh"], default="en",
                   help="zh: the Chinese edition (translated markdown, same code)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="notebooks at a time (default: one per core, at most 4)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads per kernel (default: the cores left over, at least 1)")
    p.set_defaults(fn=_course)
    p = sub.add_parser("run", help="execute one notebook with parameters (papermill)")
    p.add_argument("notebook")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"))
    p.add_argument("--out", default="build/run")
    p.set_defaults(fn=_run)
    p = sub.add_parser("train", help="train an image or text classifier by transfer learning")
    p.add_argument("data", help="a registered dataset name (hymenoptera, medmnist:pneumoniamnist, "
                   "sentiment:yelp, ...) or folder:<path>")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--mode", choices=["frozen", "finetune"], default="frozen")
    p.add_argument("--epochs", type=int, default=None, help="frozen + mlp head: epochs of the head (default 40); finetune: passes over the augmented views (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=None, help="input crop (default: the backbone's)")
    p.add_argument("--out", required=True, help="output folder for model.pt and metrics.json")
    p.set_defaults(fn=_train)
    p = sub.add_parser("predict", help="classify images (or texts) with a trained model folder")
    p.add_argument("model_dir")
    p.add_argument("paths", nargs="*", help="image files or folders; for a text model, UTF-8 files "
                   "with one text per line")
    p.add_argument("--text", action="append", help="a text to classify (text models; repeatable)")
    p.set_defaults(fn=_predict)
    p = sub.add_parser("student", help="write the student edition of the notebooks")
    p.add_argument("out_dir")
    p.add_argument("--lang", choices=["en", "zh"], default="en")
    p.set_defaults(fn=_student)
    p = sub.add_parser("book", help="render the course as a static HTML book (no execution)")
    p.add_argument("--out", default="build/book")
    p.add_argument("--lang", nargs="+", choices=["en", "zh"], default=["en", "zh"])
    p.add_argument("--jobs", type=int, default=1, help="Sphinx processes")
    p.set_defaults(fn=_book)
    p = sub.add_parser("translations", help="state of the notebooks' translation catalogues")
    p.add_argument("notebooks", nargs="*", help="default: every course notebook")
    p.add_argument("--lang", choices=["zh"], default="zh")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stale", action="store_true", help="list stale/missing cells with their English")
    g.add_argument("--stubs", action="store_true",
                   help="write todo entries for stale/missing cells into the catalogues")
    g.add_argument("--mark-guide", action="store_true",
                   help="after translating stale sections of docs/guide.LANG.md: record the English "
                   "sections they now translate")
    p.set_defaults(fn=_translations)
    p = sub.add_parser("notebooks", help="list the course notebooks (one path per line)")
    p.add_argument("--data-dependent", action="store_true",
                   help="only those whose results depend on the data mode (metadata tl_course.data)")
    p.set_defaults(fn=_notebooks)
    p = sub.add_parser("execute", help="execute notebooks in place, top to bottom, in a fresh kernel")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--threads", type=int, default=1, help="threads of the kernel (the tests use 1)")
    p.set_defaults(fn=_execute)
    sub.add_parser("slides", help="add slide metadata to every notebook").set_defaults(fn=_slides)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data import DatasetError
    from .data.images import ImageError
    from .download import DownloadError
    from .models.backbones import BackboneUnavailable, CheckpointMismatch
    from .models.text import TextModelUnavailable
    from .settings import SettingsError

    try:
        return args.fn(args)
    except (CliError, DatasetError, DownloadError, ImageError, BackboneUnavailable, TextModelUnavailable,
            CheckpointMismatch, SettingsError, FileNotFoundError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"tl-course {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `tl-course predict ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("tl-course: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the environment (a blocked folder, a full disk), not a bug: no traceback
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in str(exc) else ""
        print(f"tl-course {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`segwatch predict RUN [RUN ...] --images DIR --out DIR [--tta flip] [--zip FILE]`.

The torch part runs in its own process (``python -m trainer.predict``, an argument list, never a
shell): the app never imports torch. ``--zip`` then builds the leaderboard layout from the
masks that process wrote (its predictions.json): ``masks/<stem>.png`` at the zip's root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from app.runlib import RunNotFound, default_runs_dir, resolve_run

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="class-id masks for a folder of images: one run's best checkpoint, or an ensemble",
        description="Predict a single-channel class-id PNG per image (named by the image's stem, at its original "
        "size) with the best checkpoint of RUN, or the softmax average of several RUNs (an ensemble). A RUN is a "
        "run name (under --runs-dir), a run directory, or a checkpoint file (.pt; loaded with weights_only=True).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (e.g. the test set's images/)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the masks (created)")
    p.add_argument("--tta", choices=("none", "flip"), default="none",
                   help="flip: also predict the mirrored image and average (left/right classes swapped back)")
    p.add_argument("--zip", metavar="FILE", help="also write the submission zip (masks/<stem>.png at its root); "
                   "refused when an image has no mask (unreadable), unless --allow-partial-zip")
    p.add_argument("--allow-partial-zip", action="store_true",
                   help="write the zip even when some images have no mask (they are named; the exit code stays 1)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--config", metavar="FILE", help="the config a checkpoint file was trained with (if it holds none)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="folder of runs ($SEGWATCH_RUNS or ./runs)")
    p.set_defaults(func=cmd_predict)


def _err(msg: str, code: int = 2) -> int:
    print(f"segwatch: {msg}", file=sys.stderr)
    return code


def model_args(runs: list[str], runs_dir: Path) -> list[str]:
    out = []
    for r in runs:
        p = Path(r)
        if p.is_file():
            out.append(str(p.resolve()))
        else:
            out.append(str(resolve_run(r, runs_dir).resolve()))
    return out


def predict_argv(models: list[str], args: argparse.Namespace, python: str | None = None) -> list[str]:
    argv = [python or sys.executable, "-m", "trainer.predict"]
    for m in models:
        argv += ["--model", m]
    argv += ["--images", str(Path(args.images).resolve()), "--out", str(Path(args.out).resolve()),
             "--tta", args.tta, "--checkpoint", args.checkpoint, "--device", args.device]
    if args.config:
        argv += ["--config", str(Path(args.config).resolve())]
    return argv


class PartialSubmission(ValueError):
    """Some images have no mask: a zip without them scores 0 for each on the leaderboard."""


def build_zip(out_dir: Path, zip_path: Path, allow_partial: bool = False) -> tuple[int, list[str]]:
    """The leaderboard layout from OUT/predictions.json: ``masks/<stem>.png``; returns (count, stems
    without a mask). PartialSubmission (nothing written) when an image has no mask, unless
    ``allow_partial``."""
    manifest = json.loads((out_dir / "predictions.json").read_text())
    names = [f"{im['stem']}.png" for im in manifest["images"]]
    lacking = sorted(os.path.splitext(u["file"])[0] for u in manifest.get("unreadable") or [])
    if lacking and not allow_partial:
        raise PartialSubmission(
            f"not written: {len(lacking)} of {len(names) + len(lacking)} images have no mask (unreadable): "
            f"{', '.join(lacking[:20])}{' ...' if len(lacking) > 20 else ''}; fix those images and predict again, "
            "or pass --allow-partial-zip to submit without them")
    missing = [n for n in names if not (out_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{out_dir}: masks listed in predictions.json are missing: {', '.join(missing[:5])}")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n in names:
            z.write(out_dir / n, f"masks/{n}")
    os.replace(tmp, zip_path)
    return len(names), lacking


def cmd_predict(args: argparse.Namespace) -> int:
    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    try:
        models = model_args(args.runs, runs_dir)
    except RunNotFound as e:
        return _err(str(e))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    rc = subprocess.run(predict_argv(models, args), env=env).returncode
    if rc not in (0, 1):
        return rc
    if args.zip:
        try:
            n, lacking = build_zip(Path(args.out), Path(args.zip), allow_partial=args.allow_partial_zip)
        except (OSError, ValueError, KeyError) as e:
            return _err(f"--zip {args.zip}: {e}", 1)
        print(f"segwatch: wrote {args.zip}: {n} masks under masks/ (the leaderboard layout)"
              + (f"; PARTIAL: no mask for {len(lacking)} images: {', '.join(lacking)}" if lacking else ""),
              file=sys.stderr)
    return rc

"""`colorize` command line: a thin argument layer over the functions the notebooks call."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing

from .config import field_value, flat_fields, get_preset, override

log = logging.getLogger("colorize")


RESIZE_HELP = "go on from a --generator trained at another size than the recipe's (default: refuse)"
WORK_DIR_HELP = ("folder for the dataset's index and photo cache (default: beside the photos where they can be "
                 "written, else the user's cache folder)")


def _download(args):
    from .download import download_cifar10, download_places365

    fetch = {"places365": download_places365, "cifar10": download_cifar10}[args.dataset]
    index = fetch(args.dest or f"data/{args.dataset}", force=args.force, work_dir=args.work_dir)
    print(f"{args.dataset} ready in {index.root}: " + ", ".join(f"{k} {v}" for k, v in index.counts.items()))


def add_config_args(parser: argparse.ArgumentParser, recipe: type, presets: dict) -> None:
    """One `--field` flag per leaf field of a recipe dataclass (`config.flat_fields`), overriding the preset's value.

    Each flag's help gives the recipe's default and the presets that set another value; a field with
    choices (`config.choice`) offers only those, so a typo stops in argparse before any work. A flag that
    is not given stays None and is left out by `config_from_args`.
    """
    default = recipe()
    group = parser.add_argument_group("overrides of the preset's values")
    for name, path in flat_fields(recipe).items():
        owner = field_value(default, path[:-1])
        hint = typing.get_type_hints(type(owner))[path[-1]]
        choices = next(f for f in dataclasses.fields(owner) if f.name == path[-1]).metadata.get("choices")
        kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        value = field_value(default, path)
        others = [f"{p} {field_value(c, path)}" for p, c in presets.items() if field_value(c, path) != value]
        help = f"default {value}" + (f" ({', '.join(others)})" if others else "")
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help)
        else:
            group.add_argument(flag, dest=name, type=kind, default=None, choices=choices, help=help)


DEVICE_HELP = "cuda, cuda:1, cpu (default: a GPU if there is one)"


def add_option_args(parser: argparse.ArgumentParser, kind: type, names: tuple[str, ...] | None = None) -> None:
    """One flag per field of the frozen options value `kind` that has a help text (`config.option`, `config.choice`),
    or per field in `names`: its default and choices come from the dataclass, so the CLI and the library agree.

    Metadata of a field: `help`; `choices`; `parse` (the flag's text -> value; a ValueError is argparse's
    error); `nargs`; `flag` (default `--field-name`). A flag not given stays None and is left out by
    `options_from_args`, so the dataclass's default applies.
    """
    hints = typing.get_type_hints(kind)
    for f in dataclasses.fields(kind):
        if "help" not in f.metadata or (names is not None and f.name not in names):
            continue
        kind_of = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        help = f"{f.metadata['help']} (default {shown})" if f.default not in (None, ()) else f.metadata["help"]
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        if kind_of is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help)
            continue
        parser.add_argument(flag, dest=f.name, type=_argparse_type(f.metadata.get("parse", kind_of)), default=None,
                            choices=f.metadata.get("choices"), nargs=f.metadata.get("nargs"), help=help,
                            metavar=None if "choices" in f.metadata else flag[2:].replace("-", "_").upper())


def _argparse_type(parse):
    """`parse` with its ValueError turned into argparse's error (its message shown, the command not run)."""
    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def options_from_args(args, kind: type, **values):
    """The options value `kind` from the flags `add_option_args` made (those not given: the dataclass's defaults)."""
    for f in dataclasses.fields(kind):
        value = getattr(args, f.name, None)
        if value is not None and f.name not in values:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return kind(**values)


def config_from_args(args, presets: dict, recipe: type):
    """The named preset with every flag that was given applied (flags not given are left out here)."""
    given = {name: getattr(args, name) for name in flat_fields(recipe) if getattr(args, name) is not None}
    return override(get_preset(presets, args.preset), **given)


def say(text: str) -> None:
    """Print `text` for the user from the process that speaks: the only one, or rank 0 of a distributed job."""
    from .run import is_writer

    if is_writer():
        print(text)


def add_training_commands(sub) -> None:
    """One subcommand per training stage (`stages.STAGES`): its recipe's flags (`add_config_args`), a preset, and
    the start checkpoint where the stage takes one."""
    from .stages import STAGES

    for recipe, stage in STAGES.items():
        t = sub.add_parser(stage.command, help=f"{stage.summary} (resumes if --out has a run)")
        t.add_argument("--data", required=True, help="folder of photos (any layout; train/valid/test folders are used)")
        t.add_argument("--out", required=True, help=f"run folder, e.g. runs/places365-{stage.command}")
        if stage.start is not None:
            t.add_argument("--generator", required=stage.start == "required", help=stage.start_help)
            t.add_argument("--resize", action="store_true", help=RESIZE_HELP)
        t.add_argument("--preset", default=stage.default_preset, choices=stage.presets,
                       help=f"recipe (default {stage.default_preset})")
        t.add_argument("--device", help=DEVICE_HELP)
        add_config_args(t, recipe, stage.presets)  # --epochs --size --bs --lr --arch --no-pretrained ...
        t.set_defaults(run=_train, recipe=recipe)


def _train(args):
    from .stages import STAGES, train

    stage = STAGES[args.recipe]
    start = {"generator": args.generator, "resize": args.resize} if stage.start is not None else {}
    train(args.data, args.out, config_from_args(args, stage.presets, args.recipe), device=args.device, **start)
    say(f"{stage.what} run in {args.out}: best.safetensors, last.safetensors, history.csv, gallery_epochNNN.png; "
        f"{stage.done.replace('RUN', str(args.out))}")


def _apply(args):
    from .apply import apply_paths, hints_source
    from .archive import ArchiveOptions
    from .device import process_device
    from .inference import Rendering
    from .models import load_generator
    from .video import VideoOptions

    rendering, video = options_from_args(args, Rendering), options_from_args(args, VideoOptions)
    archive = options_from_args(args, ArchiveOptions)
    hints = hints_source(args.hints) if args.hints else None
    if args.save_hints and not args.reference:
        raise ValueError("--save-hints writes the hints derived from a reference: give --reference too")
    # alone: the device asked for or the best there is; under torchrun: the GPU of this process's local rank
    model = load_generator(args.model, device=process_device(args.device))
    if args.reference:
        from .reference import ReferenceHints

        hints = ReferenceHints(model, args.reference, hints)  # a bad reference: refused before anything is written
    result = apply_paths(model, args.inputs, args.out, rendering, hints=hints, video=video, archive=archive,
                         save_hints_to=args.save_hints)
    say(f"wrote {len(result.written)} file(s) to {args.out}"  # several processes: rank 0 speaks for all
        + (f"; kept {len(result.skipped)} done before" if result.skipped else "")
        + (f"; skipped {len(result.failed)}: " + ", ".join(f"{p} ({why})" for p, why in result.failed)
           if result.failed else ""))
    if args.reference:
        fell = result.fell_back
        say("no confident match with the reference, colorized automatically: " + ", ".join(str(p) for p, _ in fell)
            if fell else "every one written matched the reference")
    return 1 if result.failed and not result.written and not result.skipped else 0


def _evaluate_reference(args):
    from pathlib import Path

    from .device import inference_device
    from .files import atomic_write_text
    from .models import load_generator
    from .inference import Rendering
    from .reference import evaluate_pairs, pairs_markdown, read_pairs

    model = load_generator(args.model, device=inference_device(args.device))
    table = pairs_markdown(evaluate_pairs(model, read_pairs(args.pairs), options_from_args(args, Rendering)))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out) / "reference.md", table + "\n")
    print(table)


def _flicker(args):
    from .device import inference_device
    from .flicker import FlickerOptions, measure_flicker, write_flicker_report
    from .inference import Rendering
    from .models import load_generator, model_name

    names = args.names or [model_name(m) for m in args.models]
    if len(names) != len(args.models):
        raise ValueError(f"{len(names)} --names for {len(args.models)} --models: give one name per model")
    rendering, options = options_from_args(args, Rendering), options_from_args(args, FlickerOptions)
    device = inference_device(args.device)
    models = {n: load_generator(m, device=device) for n, m in zip(names, args.models)}
    report = measure_flicker(args.clip, models, rendering, options)
    paths = write_flicker_report(report, args.out)
    print(report.markdown)
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))


def _evaluate(args):
    from .evaluate import EvalOptions, evaluate

    report = evaluate(args.data, args.models, args.out, options_from_args(args, EvalOptions), names=args.names,
                      device=args.device)
    print(report.markdown)
    print("\n".join(f"{k}: {v}" for k, v in report.paths.items()))


def _export(args):
    from .export import export_onnx

    print(f"wrote {export_onnx(args.model, args.onnx, opset=args.opset)}")


def _readme_results(args):
    from pathlib import Path

    from .readme import update_readme_results

    path = update_readme_results(args.readme, Path(args.report) / "results.md", args.note)
    print(f"updated the Results section of {path} from {args.report}/results.md")


def _demo(args):
    from .demo import run_demo

    report = run_demo(args.out, data=args.data, device=args.device)
    print(report)


def _app(args):
    from .app import build_app, launch

    app = build_app(args.model, device=args.device)
    where = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        local_url, share_url = launch(app, share=args.share, **where)
    except OSError as e:  # Gradio's "Cannot find empty port"
        raise RuntimeError(f"cannot serve the app: {e}; choose another --port") from None
    print(f"colorize app on {local_url}" + (f" and {share_url}" if share_url else "") + " (Ctrl+C stops it)")
    app.block_thread()


def _push(args):
    from .share import push_checkpoint

    print(f"pushed {args.model} to {push_checkpoint(args.model, args.repo, evaluation=args.eval, private=args.private)}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="colorize", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="fetch a dataset into data/ (Kaggle Places365 subset or CIFAR-10)")
    d.add_argument("dataset", choices=["places365", "cifar10"], help="places365: the Kaggle subset (needs Kaggle credentials); cifar10: fastai's archive")
    d.add_argument("--dest", help="target folder (default data/DATASET)")
    d.add_argument("--force", action="store_true", help="download again even if complete")
    d.add_argument("--work-dir", help=WORK_DIR_HELP)
    d.set_defaults(run=_download)

    add_training_commands(sub)  # pretrain, gan, hints

    from .archive import ArchiveOptions
    from .evaluate import EvalOptions
    from .flicker import FlickerOptions
    from .inference import Rendering
    from .video import VideoOptions

    a = sub.add_parser("apply", help="colorize photos, videos or folders at full resolution")
    a.add_argument("inputs", nargs="+", help="image or video files (mp4, mov, avi, mkv, webm), or folders (searched "
                   "recursively); a video becomes <stem>.mp4")
    a.add_argument("--model", required=True, help="generator checkpoint (.safetensors)")
    a.add_argument("--out", required=True, help="folder for the colorized photos")
    a.add_argument("--hints", help='JSON list of colour hints in the photo\'s pixels, e.g. [{"x": 410, "y": 220, '
                   '"color": "#b03020", "size": 12}] (any model: a hint model also reads them); for several photos, '
                   "the same file for all, or a folder of <stem>.json hints files, one per photo by name")
    a.add_argument("--reference", help="a colour photo whose colours to use where it shows the same (or a similar) "
                   "scene; photos that do not match it are colorized automatically (colorize.reference)")
    a.add_argument("--save-hints", help="with --reference: write the hints each target used (a hints file for one "
                   "target, a folder of <stem>.json for several), to see, edit and reuse with --hints")
    a.add_argument("--device", help=DEVICE_HELP)
    add_option_args(a, Rendering)  # --render-size --precision --propagation --reach
    add_option_args(a, VideoOptions)  # --temporal
    add_option_args(a, ArchiveOptions)  # --batch --workers --format --overwrite
    a.set_defaults(run=_apply)

    f = sub.add_parser("flicker", help="flicker of colorized video: a colour clip as ground truth, per frame vs stabilised")
    f.add_argument("clip", help="a colour video (its gray frames are colorized and compared with it)")
    f.add_argument("--models", nargs="+", required=True, help="generator checkpoints (.safetensors)")
    f.add_argument("--out", required=True, help="report folder: flicker.md, flicker.json, strip.png, ab_over_time.png")
    f.add_argument("--names", nargs="+", help="table names for the models (default: run folder/file stem)")
    f.add_argument("--device", help=DEVICE_HELP)
    add_option_args(f, Rendering, ("render_size", "precision"))
    add_option_args(f, FlickerOptions)  # --temporal
    f.set_defaults(run=_flicker)

    e = sub.add_parser("evaluate", help="metrics, galleries and hardest cases of models vs the grayscale baseline")
    e.add_argument("--data", required=True, help="dataset folder (its held-out split is used)")
    e.add_argument("--models", nargs="+", required=True, help="generator checkpoints (.safetensors)")
    e.add_argument("--out", required=True, help="report folder: results.json, results.md, galleries")
    e.add_argument("--names", nargs="+", help="table names for the models (default: run folder/file stem)")
    e.add_argument("--device", help=DEVICE_HELP)
    add_option_args(e, EvalOptions)  # --split --size --precision --hints --bs --work-dir
    e.set_defaults(run=_evaluate)

    er = sub.add_parser("evaluate-reference", help="automatic against reference-guided colorization on pairs "
                        "(target, reference): PSNR RGB, PSNR ab, colourfulness")
    er.add_argument("pairs", help="CSV rows target,reference[,kind] (kind: same, mismatched or clip; paths relative "
                    "to the file); the targets are colour photos, their colour is the truth")
    er.add_argument("--model", required=True, help="generator checkpoint (.safetensors)")
    er.add_argument("--out", help="folder for reference.md (default: print only)")
    er.add_argument("--device", help=DEVICE_HELP)
    add_option_args(er, Rendering)  # --render-size --precision --propagation --reach
    er.set_defaults(run=_evaluate_reference)

    x = sub.add_parser("export", help="export a generator to ONNX (dynamic batch and size)")
    x.add_argument("--model", required=True, help="generator checkpoint (.safetensors)")
    x.add_argument("--onnx", required=True, help="output .onnx file")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    x.set_defaults(run=_export)

    r = sub.add_parser("readme-results", help="rewrite the README's Results section from an evaluate report")
    r.add_argument("--report", required=True, help="folder written by `colorize evaluate`")
    r.add_argument("--note", required=True, help="where the numbers come from: data, protocol, command")
    r.add_argument("--readme", default="README.md", help="default README.md")
    r.set_defaults(run=_readme_results)

    m = sub.add_parser("demo", help="offline demo on the photos shipped with scikit-image/scikit-learn")
    m.add_argument("--out", default="runs/demo", help="where the runs, gallery and metrics go (default runs/demo)")
    m.add_argument("--data", default="data/samples", help="where the sample photos are written")
    m.add_argument("--device", help=DEVICE_HELP)
    m.set_defaults(run=_demo)

    w = sub.add_parser("app", help="a local web page (and API) to colorize photos, with a before/after slider")
    w.add_argument("--model", action="append", required=True,
                   help="generator checkpoint (.safetensors or hf://USER/NAME); repeat for a choice of models")
    w.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    w.add_argument("--port", type=int, help="default 7860")
    w.add_argument("--share", action="store_true",
                   help="also make a public Gradio link: anyone with it can use the app")
    w.add_argument("--device", help=DEVICE_HELP)
    w.set_defaults(run=_app)

    h = sub.add_parser("push", help="share a generator and its model card on the Hugging Face Hub")
    h.add_argument("--model", required=True, help="generator checkpoint (.safetensors); its run folder's config.json "
                   "and history.csv go into the card")
    h.add_argument("--repo", required=True, help="model repository USER/NAME (created if missing)")
    h.add_argument("--eval", help="a `colorize evaluate` report (results.md or its folder) for the card")
    h.add_argument("--private", action="store_true", help="create the repository private")
    h.set_defaults(run=_push)
    return p


def main(argv=None) -> int:
    """Entry point of the `colorize` command."""
    args = build_parser().parse_args(argv)
    from fastai.torch_core import rank_distrib

    level = logging.DEBUG if args.verbose else logging.INFO
    if rank_distrib():  # one of several processes (torchrun, accelerate launch): rank 0 tells the story
        level = max(level, logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        _check_device(getattr(args, "device", None))
        return args.run(args) or 0
    except (FileNotFoundError, ModuleNotFoundError, ValueError, KeyError, RuntimeError) as e:  # the user's to fix: say what, not where
        if args.verbose:
            raise
        log.error("%s", e.args[0] if isinstance(e, KeyError) and e.args else e)  # a KeyError's str() adds quotes
        return 2


def _check_device(device: str | None) -> None:
    """Refuse a CUDA device on a machine without one before any work starts."""
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU here; "
                             "leave --device out to use what there is (the CPU)")


if __name__ == "__main__":
    sys.exit(main())

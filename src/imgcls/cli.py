"""The `imgcls` command: a thin layer over the library. Errors are one line; --debug shows the traceback."""

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import sys
import types
import typing
from pathlib import Path

from imgcls.config import BACKENDS, RECIPES, TrainConfig, read_config_file
from imgcls.errors import ImgclsError, InvalidValue, closest, first_line, unknown


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and, for an option it does not know, a hint from the command it
    was given to ("did you mean --epochs?"), not from every command's options."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)  # "--epoch" must not quietly mean "--epochs"

    def error(self, message):
        raise ImgclsError(f"{message} (see '{self.prog} --help')")

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse collects them at the top: report them from the subcommand they followed
            command = self
            while sub := next((a for a in command._actions if isinstance(a, argparse._SubParsersAction)), None):
                command = sub.choices[getattr(parsed, sub.dest)]
            command.error(f"unrecognized arguments: {' '.join(extras)}{command._hint(extras)}")
        return parsed

    def _hint(self, extras):
        """The likeliest meaning of the first unknown option: one of this command's, or a positional
        argument written as an option (predict --model RUN)."""
        positionals = {action.dest: action.metavar or action.dest.upper()
                       for action in self._actions if not action.option_strings}
        options = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        for word in extras:
            name = word.split("=")[0]
            dest = name.removeprefix("--").replace("-", "_")
            if name.startswith("--") and dest in positionals:
                return f" ({positionals[dest]} is positional, without {name})"
            guess = closest(name, options)
            if guess:
                return f" (did you mean {guess}?)"
        return ""


MODEL_HELP = "a run folder (imgcls train --out) or a saved .keras / .h5 model"


def build_parser():
    parser = Parser(prog="imgcls", description="Train, evaluate and use Keras image classifiers.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser("train", help="train a model into a run folder",
                                epilog="Unset options come from the recipe (--preset) for the dataset.")
    add_config_flags(train)
    train.add_argument("--config", help="JSON file of config keys (a run's config.json reruns it)")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in --out")

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model on a test split or your own pictures")
    evaluate.add_argument("model", metavar="MODEL_OR_RUN", help=MODEL_HELP)
    evaluate.add_argument("--dataset", help="dataset to test on (default: the one it was trained on)")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--images", metavar="DIR", help="a labelled folder of real pictures, DIR/<class>/*, "
                                                          "converted as predict converts them")
    evaluate.add_argument("--no-preprocess", action="store_true", help="as for predict (with --images)")
    evaluate.add_argument("--out", help="folder for metrics and plots (default: <model folder>/eval-<name>)")
    evaluate.add_argument("--cache-mode", default="auto", help="as for train: where a folder's decoded images are kept")
    evaluate.add_argument("--memory-budget", type=float, help="as for train: MB of decoded images held in memory")

    predict = commands.add_parser("predict", help="classify image files, folders of images or glob patterns")
    predict.add_argument("model", metavar="MODEL_OR_RUN", help=MODEL_HELP)
    predict.add_argument("images", metavar="IMAGE", nargs="+",
                         help="image files, folders (searched recursively) or glob patterns")
    predict.add_argument("--top-k", type=int, default=3)
    output = predict.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--csv", metavar="FILE", help="write one row per image to FILE instead of a table")
    predict.add_argument("--runtime", default="keras", help="keras, or onnx / litert for the model exported by "
                                                            "'imgcls export' (no TensorFlow loaded)")
    predict.add_argument("--no-preprocess", action="store_true",
                         help="only convert colour mode and size: no inverting, cropping or centring of digits")
    predict.add_argument("--tta", action="store_true",
                         help="average over the test-time views the model was trained to be measured with "
                              "(imgcls train --tta): its test_accuracy_tta, for one more model pass per view")

    serve = commands.add_parser("serve", help="serve a model over HTTP: JSON API, docs at /docs, drawing page at /")
    serve.add_argument("model", metavar="MODEL_OR_RUN", help=MODEL_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-upload-mb", type=float, default=5, help="largest request body accepted (default 5)")
    serve.add_argument("--no-preprocess", action="store_true", help="as for predict")
    serve.add_argument("--runtime", default="keras", help="as for predict: onnx serves faster, in less memory")
    serve.add_argument("--tta", action="store_true", help="as for predict")
    serve.add_argument("--api-key", default=os.environ.get("IMGCLS_API_KEY"),
                       help="key that /predict and /model require (default: $IMGCLS_API_KEY; none: open)")
    serve.add_argument("--allowed-hosts", help="comma-separated Host names to answer (default: the loopback "
                                               "names and --host; * for any)")
    serve.add_argument("--max-connections", type=int, default=500, help="open connections at once; more get 503")

    export = commands.add_parser("export", help="export a model to ONNX, LiteRT, a SavedModel or a web page, "
                                                "checked in its own runtime")
    export.add_argument("model", metavar="MODEL_OR_RUN", help=MODEL_HELP)
    export.add_argument("--format", required=True, help="onnx, litert, saved_model or web (a page that runs the "
                                                         "model in the browser: no server)")
    export.add_argument("--quantize", choices=["int8"], help="int8 weights and activations (litert only)")
    export.add_argument("--out", help="folder (default: <run>/export)")
    export.add_argument("--check-images", type=int, default=1000,
                        help="test images the exported file is checked on against Keras (default 1000)")
    export.add_argument("--tta", action="store_true", help="web: the page averages the test-time views the run "
                                                           "was measured with, as predict --tta does")

    datasets = commands.add_parser("datasets", help="list or fetch datasets")
    datasets_commands = datasets.add_subparsers(dest="action", required=True, parser_class=Parser)
    datasets_commands.add_parser("list", help="the datasets imgcls knows")
    fetch = datasets_commands.add_parser("fetch", help="download, verify and cache a dataset")
    fetch.add_argument("name")
    fetch.add_argument("--data-dir")

    commands.add_parser("models", help="list the model presets")

    bench = commands.add_parser("bench", help="time to accuracy against the tutorial, inference speed, efficiency")
    bench.add_argument("--only", help="comma-separated parts (default: all but cifar10-94 and cifar10-c); an "
                                      "unknown name lists them")
    bench.add_argument("--seeds", type=int, default=1, help="seeds for the cifar10 and fashion rows, reported as mean "
                                                            "and spread (default 1: three CIFAR-10 seeds take most "
                                                            "of an hour on 2 CPU cores)")
    bench.add_argument("--cifar-dir", help="CIFAR-10 batches or image folders, for the cifar10 and transfer parts")
    bench.add_argument("--run", metavar="RUN", help="for the wild, cifar10-c and export parts: measure this run folder "
                                                    "or model file instead of training recipes")
    # --debug after the command too (imgcls train --debug), as people type it; unset there, the top
    # level's value stands.
    for command in list(subcommands(parser)):
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show full tracebacks on errors")
    return parser


def subcommands(parser):
    """Every command under `parser`, at every depth (datasets, then datasets fetch)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                yield command
                yield from subcommands(command)


def add_config_flags(parser):
    """One flag per TrainConfig field: its name, type and help come from the field. No flag has a
    default of its own, so only the flags given override the recipe and the config file."""
    from imgcls.data import list_datasets

    extra_help = {"preset": "; ".join(f"{name}: {recipe.about}" for name, recipe in RECIPES.items()),
                  "dataset": ", ".join(list_datasets())}
    for field in dataclasses.fields(TrainConfig):
        kind = next(t for t in _types(field.type) if t is not type(None))
        options = {k: v for k, v in field.metadata.items() if k != "help"}
        text = field.metadata["help"] + (f" ({extra_help[field.name]})" if field.name in extra_help else "")
        flag = "--" + field.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(flag, type=kind, nargs="?" if "const" in options else None, help=text, **options)


def _types(annotation):
    return typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)


def cmd_train(args):
    from imgcls.config import resolve_config
    from imgcls.train import train

    flags = {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)}
    config = resolve_config(config_file=args.config, **flags)
    run = train(config, overwrite=args.overwrite)
    m = run.metrics
    if run.folder is None:
        print(f"Worker {m['worker_index']} of {m['workers']} done; the chief (worker 0) writes the run folder.")
        print(f"Weights SHA-256: {m['weights_sha256']}")
        return
    print(f"{m['epochs']} epochs in {m['training_seconds']:.1f} s; report: {run.folder / 'report.md'}")
    print(f"Run folder: {run.folder}")
    print(accuracy_line(m))


def accuracy_line(metrics):
    """The last line of train and evaluate: the test accuracy, and with the model's test-time views
    the accuracy `predict --tta` gives."""
    line, tta = f"Test accuracy: {metrics['test_accuracy']:.2%}", metrics.get("test_accuracy_tta")
    return line if tta is None else f"{line} ({tta:.2%} with predict --tta)"


def cmd_evaluate(args):
    from imgcls.evaluate import evaluate_saved

    if args.images and args.dataset:
        raise ImgclsError("give --images or --dataset, not both")
    folder, metrics = evaluate_saved(args.model, dataset=args.dataset, data_dir=args.data_dir, out=args.out,
                                     images=args.images, preprocess=not args.no_preprocess,
                                     cache_mode=args.cache_mode, memory_budget=args.memory_budget)
    print(f"Results: {folder}")
    print(accuracy_line(metrics))


def cmd_predict(args):
    from imgcls.predict import format_table, predict_files, with_tta, write_csv

    if args.csv and Path(args.csv).is_dir():  # refuse now rather than lose the predictions later
        raise ImgclsError(f"--csv {args.csv} is a folder; give a file name")
    if args.runtime == "keras":
        from imgcls.saving import load_model

        model, metadata, _ = load_model(args.model)
    else:
        from imgcls.export.runtimes import load_exported

        model, metadata = load_exported(args.model, args.runtime)
    if args.tta:
        model = with_tta(model, metadata, args.model)
    results = predict_files(model, metadata["class_names"], args.images, top_k=args.top_k,
                            dataset=metadata.get("dataset"), preprocess=not args.no_preprocess)
    if args.csv:
        write_csv(args.csv, results)
        print(f"{len(results)} rows written to {args.csv}")
    elif args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    failed = [r["file"] for r in results if "error" in r]
    if failed:
        more = ", ..." if len(failed) > 5 else ""
        raise ImgclsError(f"{len(failed)} of {len(results)} images could not be read: {', '.join(failed[:5])}{more}")


def cmd_serve(args):
    from imgcls.serve import serve

    if args.max_upload_mb <= 0:
        raise ImgclsError("--max-upload-mb must be positive")
    if not 0 < args.port < 65536:
        raise ImgclsError(f"--port must be from 1 to 65535, got {args.port}")
    if args.max_connections < 1:
        raise ImgclsError("--max-connections must be at least 1")
    hosts = [h.strip() for h in args.allowed_hosts.split(",") if h.strip()] if args.allowed_hosts else None
    serve(args.model, host=args.host, port=args.port, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
          preprocess=not args.no_preprocess, api_key=args.api_key or None, allowed_hosts=hosts,
          max_connections=args.max_connections, runtime=args.runtime, tta=args.tta)


def cmd_export(args):
    from imgcls.export import export_run

    path = export_run(args.model, args.format, quantize=args.quantize, out=args.out, check_images=args.check_images,
                      tta=args.tta)
    print(f"Exported: {path}")
    print(f"Model card: {path.parent / 'model_card.md'}")
    if args.format == "web":
        print(f"Page: {path / 'index.html'} (open it in a browser, or put the folder on any static host)")


def cmd_datasets(args):
    from imgcls.data import fetch_dataset, list_datasets

    if args.action == "list":
        for name, description in list_datasets().items():
            print(f"{name:15} {description}")
    else:
        print(f"Cached: {fetch_dataset(args.name, data_dir=args.data_dir)}")


def cmd_models(args):
    from imgcls.models import list_models

    models = list_models()
    width = max(map(len, models))
    for name, description in models.items():
        print(f"{name:{width}} {description}")


def cmd_bench(args):
    from imgcls.bench import DEFAULT_PARTS, run_bench

    if args.seeds < 1:
        raise InvalidValue("seeds", f"must be at least 1, got {args.seeds}")
    parts = [p.strip() for p in args.only.split(",") if p.strip()] if args.only else DEFAULT_PARTS
    run_bench(parts, cifar_dir=args.cifar_dir, run=args.run, seeds=args.seeds)


def _choose_backend(args):
    """`train --backend` (or the config file's "backend", or the resumed run's): Keras reads
    KERAS_BACKEND once, when it is first imported, so it is set here, before anything imports Keras."""
    backend = args.backend
    if backend is None and (args.config or getattr(args, "resume", None)):
        from imgcls.resume import run_config_file

        backend = read_config_file(args.config or run_config_file(args.resume)).get("backend")
    if backend is None:
        return
    if backend not in BACKENDS:
        raise unknown("backend", backend, BACKENDS)
    if importlib.util.find_spec(backend) is None:  # each backend's package has the backend's name
        raise ImgclsError(f"the {backend} backend needs {backend} installed: pip install 'imgcls[{backend}]'")
    os.environ["KERAS_BACKEND"] = backend


def _quiet_backend():
    """TensorFlow's start-up chatter buries the output people came for. Its C++ logger ignores
    TF_CPP_MIN_LOG_LEVEL for the first lines, so stderr is closed while the backend loads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    import absl.logging
    absl.logging.set_verbosity(absl.logging.ERROR)


def _unforeseen(error, command):
    """An error imgcls did not raise, as one line; running out of memory (MemoryError, or the
    backend's own: TensorFlow's ResourceExhaustedError, JAX's RESOURCE_EXHAUSTED, PyTorch's
    OutOfMemoryError) says so, and in training what to lower."""
    name, text = type(error).__name__, str(error).strip()
    if not (isinstance(error, MemoryError) or name in ("ResourceExhaustedError", "OutOfMemoryError")
            or text.startswith("RESOURCE_EXHAUSTED")):
        return f"{name}: {first_line(error)}"
    detail = re.sub(r"^\{\{.*?\}\} *", "", first_line(error))  # TensorFlow's {{function_node ...}} prefix
    return (f"out of memory ({detail})" if text else "out of memory") + \
        ("; a smaller --batch-size or --input-size needs less" if command == "train" else "")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    debug, command = False, None
    try:
        args = build_parser().parse_args(argv)
        debug, command = args.debug, args.command
        if command == "train":
            _choose_backend(args)
        if not debug and getattr(args, "runtime", "keras") == "keras":  # other runtimes never load TensorFlow
            _quiet_backend()
        handler = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "serve": cmd_serve,
                   "datasets": cmd_datasets, "models": cmd_models, "bench": cmd_bench, "export": cmd_export}[command]
        handler(args)
    except ImgclsError as e:
        if debug:
            raise
        message = f"--{e.key.replace('_', '-')} {e.problem}" if isinstance(e, InvalidValue) else str(e)
        print(f"imgcls: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("imgcls: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an unforeseen failure: still one line, the details on request
        if debug:
            raise
        print(f"imgcls: error: {_unforeseen(e, command)} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

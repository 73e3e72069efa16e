"""Training configuration: defaults in one place, named recipes, and the order they apply in.

Precedence: the defaults below < a recipe (`--preset`, refined per dataset by the dataset's spec)
< a JSON config file < command-line flags. Each field is one line: its default, and the help text
the CLI shows for its flag (`--batch-size` for `batch_size`), so a new field is a new flag.
The resolved config is saved in each run folder and is enough to rerun the run.
"""

import dataclasses
import json
import types
import typing
from pathlib import Path

from imgcls.errors import ImgclsError, InvalidValue, unknown


def option(default, help, **cli):
    """A config field: its default, its help, and argparse extras for its flag (e.g. const)."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


@dataclasses.dataclass
class TrainConfig:
    preset: str = option("default", "training recipe the other values start from (see RECIPES)")
    dataset: str = option("mnist", "a built-in dataset or folder:PATH of your own images")
    model: str = option("fast", "model preset (see 'imgcls models')")
    epochs: int | None = option(None, "passes over the training set (your own folders: by default enough for "
                                      "about 400 steps, 1 to 20)")
    batch_size: int = option(64, "images per step; on 2 CPU cores 64 converged sooner than 32, 128 or 256")
    optimizer: str = option("adam", "adam; sgd (Nesterov momentum 0.9); or muon: sgd, but convolution kernels take "
                                     "orthogonalised steps (the CIFAR-10 recipe)")
    lr: float = option(1e-2, "(peak) learning rate")
    schedule: str = option("onecycle", "onecycle (linear warm-up, then linear decay to zero) or constant")
    warmup: float = option(0.2, "share of the steps spent warming up in the one-cycle schedule")
    kernel_lr: float = option(0.2, "with muon: the convolution kernels' (peak) learning rate; --lr sets the rest's")
    offset_lr: float = option(1.0, "learning-rate multiplier for batch norm's offsets with sgd (airbench: 64)")
    whitening_span: float = option(0.0, "with sgd or muon: share of the run over which a whitening layer's bias "
                                        "learns, at the offsets' rate falling to zero (airbench: 0.375); 0: "
                                        "it learns as the other weights")
    weight_decay: float = option(0.0, "decoupled weight decay, per step, scaled by the learning rate")
    label_smoothing: float = option(0.0, "share of each label spread over the other classes")
    steps_per_execution: int = option(8, "batches per compiled call: 25 to 45 percent faster than 1 on a CPU")
    validation_split: float = option(0.1, "share of the training set held out (from its end, as Keras does)")
    augment: str | None = option(None, "random augmentation in training, a comma list: shift, nudge, flip, altflip, "
                                        "noise (camera noise, for photos), digits (handwriting), auto (shift, and flip for "
                                        "colour images; the value when the flag is given alone)",
                                 const="auto", metavar="KINDS")
    tta: bool = option(False, "also report test accuracy averaged over views of each image, e.g. its mirror "
                              "(for photos)")
    tta_views: int = option(2, "views of each image --tta averages: 2, it and its mirror; or 6, those and "
                               "both shifted a pixel diagonally each way (airbench's)")
    early_stopping: int | None = option(None, "stop when validation loss has not improved for PATIENCE "
                                              "epochs (3 when given alone)", const=3, metavar="PATIENCE")
    seed: int = option(0, "random seed for weights, shuffling and augmentation")
    out: str | None = option(None, "run folder (default runs/<dataset>-<model>-<timestamp>)")
    data_dir: str | None = option(None, "local copy of the dataset (e.g. CIFAR-10 batches or image folders)")
    cache_mode: str = option("auto", "where a folder dataset's decoded images are kept: memory; disk (decoded "
                                     "once into the cache, read a batch at a time); stream (decoded from the "
                                     "files a batch at a time); auto: memory within the memory budget, else "
                                     "disk, else stream")
    memory_budget: float | None = option(None, "MB of decoded images a folder dataset may hold in memory in auto "
                                               "cache mode (default: a quarter of the machine's memory)")
    resume: str | None = option(None, "continue the interrupted run in folder RUN from its last finished epoch; "
                                      "only --epochs, --tensorboard and --mlflow may change", metavar="RUN")
    tensorboard: bool = option(False, "write TensorBoard logs (scalars per epoch, learning rate, graph) to "
                                      "<run>/tensorboard (the tensorboard extra)")
    mlflow: str | None = option(None, "log params, metrics per epoch and the run's files to MLflow at URI (a "
                                      "folder or a server; ./mlruns when given alone; the mlflow extra)",
                                const="mlruns", metavar="URI")
    backend: str | None = option(None, "Keras backend: tensorflow, jax or torch (default: $KERAS_BACKEND, "
                                       "else tensorflow)")
    workers: str | None = option(None, "train on several processes or machines together: every worker's "
                                       "host:port, comma-separated, the same list and order on each (JAX "
                                       "backend; worker 0, the chief, listens on its port and writes the run)",
                                 metavar="HOST:PORT,...")
    worker_index: int = option(0, "this process's place in --workers, from 0 (the chief)")
    input_size: int | None = option(None, "side in pixels pictures are resized to inside the model (default: the "
                                          "preset's own, 224 for the pretrained ones, else the dataset's); "
                                          "folders are read at it")
    weights: str | None = option(None, "a pretrained preset's starting weights: imagenet (downloaded once into the "
                                       "imgcls cache), none (random), or FILE, a local copy of the file imagenet "
                                       "downloads (default: imagenet; none with --init-from)")
    init_from: str | None = option(None, "start from an earlier run's weights (its folder or model file): every "
                                         "layer whose shapes match; a new head when the classes differ",
                                   metavar="RUN")
    finetune_epochs: int = option(0, "then this many epochs more with the top quarter of a frozen backbone "
                                     "unfrozen, at a tenth of the learning rate")
    class_weight: str | None = option(None, "balanced: weigh each class's loss by the inverse of its share of the "
                                            "training images (for unbalanced folders)")

    def validate(self):
        """Reject wrong types and nonsense before any data is fetched, model built or file written."""
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        for address in self.worker_addresses():
            host, _, port = address.rpartition(":")
            if not (host and port.isdigit() and 0 < int(port) < 65536):
                raise InvalidValue("workers", f"must be HOST:PORT items, comma-separated; got {address!r}")
        checks = [
            ("epochs", self.epochs is None or self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("steps_per_execution", self.steps_per_execution >= 1, "must be at least 1"),
            ("lr", 0 < self.lr < float("inf"), "must be a positive, finite number"),
            ("validation_split", 0 <= self.validation_split < 1, "must be in [0, 1)"),
            ("early_stopping", self.early_stopping is None or self.early_stopping >= 1, "must be at least 1"),
            ("warmup", 0 <= self.warmup < 1, "must be in [0, 1)"),
            ("kernel_lr", 0 < self.kernel_lr < float("inf"), "must be a positive, finite number"),
            ("offset_lr", 0 < self.offset_lr < float("inf"), "must be a positive, finite number"),
            ("whitening_span", 0 <= self.whitening_span <= 1, "must be in [0, 1]"),
            ("weight_decay", 0 <= self.weight_decay < float("inf"), "must not be negative"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            ("tta_views", self.tta_views in (2, 6), "must be 2 or 6"),
            ("seed", 0 <= self.seed < 2**32, "must be a whole number from 0 to 2**32 - 1"),
            ("memory_budget", self.memory_budget is None or 0 < self.memory_budget < float("inf"),
             "must be a positive number of MB"),
            ("worker_index", 0 <= self.worker_index < max(1, len(self.worker_addresses())),
             "must be from 0 to one less than the number of --workers (0 without them)"),
            ("batch_size", self.batch_size % max(1, len(self.worker_addresses())) == 0,
             "must split evenly between the workers (each takes an equal share of every batch)"),
            ("input_size", self.input_size is None or self.input_size >= 8, "must be at least 8 pixels"),
            ("finetune_epochs", self.finetune_epochs >= 0, "must not be negative"),
        ]
        for key, ok, rule in checks:
            if not ok:
                raise InvalidValue(key, f"{rule}, got {getattr(self, key)!r}")
        from imgcls.augment import POLICIES  # here: these import Keras, which reading a config must not need
        from imgcls.data.folder import CACHE_MODES
        from imgcls.models import check_weights, model_spec
        from imgcls.saving import resolve_model_path

        spec = model_spec(self.model)
        if spec.pretrained and self.input_size is not None and self.input_size < 32:
            raise InvalidValue("input_size", f"must be at least 32 pixels for {self.model}, got {self.input_size}")
        if self.weights is not None:
            check_weights(self.model, self.weights)
        if self.init_from is not None:
            resolve_model_path(self.init_from)
        if self.class_weight not in (None, *CLASS_WEIGHTS):
            raise unknown("class weight", self.class_weight, CLASS_WEIGHTS)
        for key, valid in (("schedule", SCHEDULES), ("optimizer", OPTIMIZERS), ("cache_mode", CACHE_MODES)):
            if getattr(self, key) not in valid:
                raise unknown(key, getattr(self, key), valid)
        if self.backend is not None and self.backend not in BACKENDS:
            raise unknown("backend", self.backend, BACKENDS)
        if self.augment and not set(self.augment.split(",")) <= set(POLICIES):
            raise InvalidValue("augment", f"unknown kind {self.augment!r}; valid: a comma list of {', '.join(POLICIES)}")
        return self

    def worker_addresses(self):
        """The --workers list as host:port strings; [] for a run in this process alone."""
        return [a.strip() for a in self.workers.split(",")] if self.workers else []


def _check_type(key, value, annotation):
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return
    if not any(isinstance(value, t) and (t is bool or not isinstance(value, bool)) for t in allowed if t is not type(None)):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        raise InvalidValue(key, f"must be {names}, got {value!r}")


SCHEDULES = ("onecycle", "constant")
OPTIMIZERS = ("adam", "sgd", "muon")
BACKENDS = ("tensorflow", "jax", "torch")
CLASS_WEIGHTS = ("balanced",)


@dataclasses.dataclass(frozen=True)
class Recipe:
    about: str
    values: dict  # overrides of the defaults; a dataset's spec may refine them further


RECIPES = {
    "default": Recipe("our fastest good recipe for the dataset", {}),
    "best": Recipe("highest accuracy within a few minutes of training", {}),  # each dataset's own (imgcls.data)
    # Keras's transfer-learning guide, on a CPU: the new head on the frozen backbone, then the top of
    # the backbone with it, each phase stopped when validation loss stops improving.
    "finetune": Recipe("a pretrained backbone for your own photos: head first, then the backbone's top",
                       dict(model="efficientnet_b0", epochs=10, finetune_epochs=10, batch_size=32, lr=1e-3,
                            schedule="constant", augment="shift,flip", early_stopping=3, validation_split=0.2)),
    # The tutorial notebook, kept honest: it is the baseline every speed claim is measured against.
    "seed": Recipe("the tutorial notebook, exactly (the baseline)",
                   dict(model="cnn2", epochs=5, batch_size=32, lr=1e-3, schedule="constant",
                        validation_split=0.1, augment=None, steps_per_execution=1)),
}


def resolve_config(preset=None, config_file=None, **flags):
    """Apply the recipe (refined for the chosen dataset), then the config file (with `resume`, the
    run's own config.json), then the flags given (not None)."""
    from imgcls.data import dataset_recipe

    flags = {k: v for k, v in flags.items() if v is not None}
    if "resume" in flags:  # train() refuses the flags that must not change
        from imgcls.resume import run_config_file

        if config_file:
            raise ImgclsError("--resume continues the run with its own config.json; give no --config")
        config_file = run_config_file(flags["resume"])
    file_values = read_config_file(config_file) if config_file else {}
    preset = preset or file_values.pop("preset", None) or "default"
    if preset not in RECIPES:
        raise unknown("preset", preset, RECIPES)
    dataset = flags.get("dataset", file_values.get("dataset", TrainConfig.dataset))
    if not isinstance(dataset, str):
        raise InvalidValue("dataset", f"must be str, got {dataset!r}")
    values = {**RECIPES[preset].values, **dataset_recipe(dataset, preset), **file_values, **flags,
              "preset": preset}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    extra = sorted(set(values) - known)
    if extra:
        raise ImgclsError(f"unknown config keys: {', '.join(extra)}; valid keys: {', '.join(sorted(known))}")
    return TrainConfig(**values).validate()


def read_config_file(path):
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ImgclsError(f"config file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise ImgclsError(f"cannot read config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise ImgclsError(f"config file {path} must hold a JSON object")
    return values

"""Logs for the tools people already use: TensorBoard event files (`--tensorboard`) and MLflow runs
(`--mlflow [URI]`). Each is an optional extra, imported only when asked for."""

import contextlib
import importlib.util
import json
import os
import time
from pathlib import Path

import keras

from imgcls.errors import ImgclsError
from imgcls.runs import read_metrics, write_json

EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # config field -> module it needs (the extra's name)
FINAL_METRICS = ("test_accuracy", "test_accuracy_tta", "test_loss", "training_seconds")


def check_installed(config):
    """One line naming the extra to install, before any data is loaded."""
    for field, module in EXTRAS.items():
        if getattr(config, field) and importlib.util.find_spec(module) is None:
            raise ImgclsError(f"--{field} needs the {module} extra: pip install 'imgcls[{module}]'")


def tensorboard_logger(config, folder):
    """Keras's TensorBoard callback into <run>/tensorboard: per-epoch scalars for training and
    validation, the learning rate, and the model's conceptual graph; None unless asked for."""
    if not config.tensorboard:
        return None
    return keras.callbacks.TensorBoard(log_dir=str(Path(folder) / "tensorboard"))


def tracking_uri(value):
    """A folder becomes a file: URI (MLflow's local file store); anything with a scheme is kept."""
    return value if "://" in value or value == "databricks" else Path(value).resolve().as_uri()


class MlflowLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics, the learning rate included, to the MLflow run `run_id`, at step
    epoch number (from 1)."""

    def __init__(self, client, run_id):
        super().__init__()
        self.client, self.run_id = client, run_id

    def on_epoch_end(self, epoch, logs=None):
        from mlflow.entities import Metric

        # The rate the optimizer has reached (as Keras's TensorBoard logs it): its schedule at its step count.
        values = {**(logs or {}), "learning_rate": keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)}
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, epoch + 1) for k, v in values.items()])


@contextlib.contextmanager
def mlflow_run(config, folder, params):
    """Yield an MlflowLogger for the training (None unless asked for); when the run is written, log
    its test metrics and files and end the MLflow run: FINISHED, or KILLED when interrupted,
    FAILED when training failed."""
    if not config.mlflow:
        yield None
        return
    uri = tracking_uri(config.mlflow)
    if uri.startswith("file:"):  # MLflow 3 keeps its file store only on request; it is the local store we want
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(uri)
    record = Path(folder) / "mlflow.json"
    previous = {}
    if config.resume:
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads(record.read_text())
    if previous.get("tracking_uri") == uri:
        run_id = previous["run_id"]
        client.update_run(run_id, status="RUNNING")
    else:
        experiment = client.get_experiment_by_name("imgcls")
        experiment_id = experiment.experiment_id if experiment else client.create_experiment("imgcls")
        run_id = client.create_run(experiment_id, run_name=Path(folder).name,
                                   tags={"dataset": config.dataset, "model": config.model}).info.run_id
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        write_json(record, {"tracking_uri": uri, "run_id": run_id})
    try:
        yield MlflowLogger(client, run_id)
    except BaseException as e:
        client.set_terminated(run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    metrics = read_metrics(Path(folder) / "metrics.json") or {}
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(metrics[k]), now, 0) for k in FINAL_METRICS if k in metrics])
    for file in sorted(Path(folder).rglob("*")):
        if file.is_file() and not file.name.startswith("."):
            parent = file.parent.relative_to(folder).as_posix()
            client.log_artifact(run_id, str(file), None if parent == "." else parent)
    client.set_terminated(run_id, "KILLED" if metrics.get("interrupted") else "FINISHED")

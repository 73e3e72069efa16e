"""--tensorboard and --mlflow: a real run's event files and MLflow store, read back with the tools'
own readers, hold what the run folder holds."""

import csv
import dataclasses
import importlib.util
import json

import pytest
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from imgcls.cli import main
from imgcls.config import resolve_config
from imgcls.tracking import tracking_uri
from imgcls.train import train


@pytest.fixture(scope="module")
def run(mnist, tmp_path_factory):
    small = dataclasses.replace(mnist, x_train=mnist.x_train[:2000], y_train=mnist.y_train[:2000],
                                x_test=mnist.x_test[:500], y_test=mnist.y_test[:500])
    root = tmp_path_factory.mktemp("tracked")
    config = resolve_config(model="dense", epochs=2, tensorboard=True, mlflow=str(root / "mlruns"), out=str(root / "run"))
    run = train(config, dataset=small, progress=False)
    with open(run.folder / "history.csv", newline="") as f:
        run.history = list(csv.DictReader(f))
    return run


def scalars(folder, tag):
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return [(e.step, float(make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]


def test_tensorboard_logs_epoch_scalars_the_learning_rate_and_the_graph(run):
    logs = run.folder / "tensorboard"
    for folder, prefix in ((logs / "train", ""), (logs / "validation", "val_")):
        for metric in ("loss", "accuracy"):
            logged = scalars(folder, f"epoch_{metric}")
            assert [step for step, _ in logged] == [0, 1]
            assert [v for _, v in logged] == pytest.approx([float(r[prefix + metric]) for r in run.history], rel=1e-5)
    rates = [v for _, v in scalars(logs / "train", "epoch_learning_rate")]
    assert len(rates) == 2 and rates[0] > rates[1] >= 0  # the one-cycle schedule falls to zero at the end
    events = EventAccumulator(str(logs / "train"))
    events.Reload()
    assert events.SummaryMetadata("keras").plugin_data.plugin_name == "graph_keras_model"  # the Graphs tab
    graph = json.loads(make_ndarray(events.Tensors("keras")[0].tensor_proto).item())
    # What is trained: the input, the augmentation, then the network with its layers.
    _, wrapper, model = graph["config"]["layers"]
    assert wrapper["config"]["name"] == "augmentation" and model["config"]["name"] == "dense"
    assert [layer["class_name"] for layer in model["config"]["layers"]].count("Dense") == 3


def test_mlflow_holds_params_metrics_per_epoch_and_the_run_folder(run):
    record = json.loads((run.folder / "mlflow.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    logged = client.get_run(record["run_id"])
    assert logged.info.status == "FINISHED" and logged.info.run_name == run.folder.name
    assert logged.data.params["model"] == "dense" and logged.data.params["epochs"] == "2"
    for metric in ("loss", "val_accuracy"):
        history = client.get_metric_history(record["run_id"], metric)
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx([float(r[metric]) for r in run.history], rel=1e-6)
    rates = client.get_metric_history(record["run_id"], "learning_rate")
    tensorboard = scalars(run.folder / "tensorboard" / "train", "epoch_learning_rate")
    assert [m.step for m in rates] == [1, 2] and [m.value for m in rates] == pytest.approx([v for _, v in tensorboard])
    assert logged.data.metrics["test_accuracy"] == run.metrics["test_accuracy"]
    artifacts = {a.path for a in client.list_artifacts(record["run_id"])}
    assert {"model.keras", "metrics.json", "config.json", "report.md", "tensorboard"} <= artifacts
    copy = client.download_artifacts(record["run_id"], "metrics.json", str(run.folder.parent))
    assert json.loads(open(copy).read()) == run.metrics
    assert record["tracking_uri"] == tracking_uri(str(run.folder.parent / "mlruns"))


def test_mlflow_alone_means_the_local_mlruns_folder(monkeypatch):
    seen = {}

    def stop_before_training(config, **options):
        seen["config"] = config
        raise KeyboardInterrupt

    monkeypatch.setattr("imgcls.train.train", stop_before_training)
    assert main(["train", "--mlflow", "--tensorboard"]) == 130
    assert seen["config"].mlflow == "mlruns" and seen["config"].tensorboard
    assert tracking_uri("mlruns").startswith("file:///") and tracking_uri("http://host:5000") == "http://host:5000"


@pytest.mark.parametrize("extra", ["tensorboard", "mlflow"])
def test_a_missing_extra_is_one_line_naming_it(capsys, monkeypatch, tmp_path, extra):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == extra else find_spec(name, *a))
    assert main(["train", f"--{extra}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"imgcls: error: --{extra} needs the {extra} extra: pip install 'imgcls[{extra}]'"
    assert not (tmp_path / "run").exists()  # refused before anything was loaded or written

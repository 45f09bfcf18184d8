"""Tests for handgrad.state: each kind a model file holds, and the one check of the
tensors read back (the estimator's files: test_estimator_files.py; checkpoints:
test_callbacks.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from handgrad.errors import ModelFileError
from handgrad.modelfile import load_arrays, load_checkpoint, save_arrays, save_checkpoint
from handgrad.network import MLP
from handgrad.optim import SGD
from handgrad.state import KINDS, check_tensors, load_model, load_run, save_model, save_run
from handgrad.training import History, Run
from handgrad.twolayer import TwoLayerNet


def _mlp() -> MLP:
    return MLP(4, (5, 3), 2, activation="tanh", head="sigmoid", seed=1, dtype=np.float32)


def _assert_same_network(a: MLP, b: MLP) -> None:
    assert type(a) is type(b)
    assert (a.layer_sizes, a.activation, a.head, a.init, a.std, a.dtype) == (
        b.layer_sizes,
        b.activation,
        b.head,
        b.init,
        b.std,
        b.dtype,
    )
    assert a.params.keys() == b.params.keys()
    for name, value in a.params.items():
        assert b.params[name].tobytes() == value.tobytes(), name  # bit-identical


# ------------------------------------------------------------------------------ kinds
@pytest.mark.parametrize(
    ("model", "kind"),
    [(_mlp(), "MLP"), (TwoLayerNet(4, 6, 3, std=1e-2, seed=2), "TwoLayerNet")],
)
def test_networks_round_trip_as_their_kind(tmp_path: Path, model: MLP, kind: str) -> None:
    path = save_model(tmp_path / "net.safetensors", model, extra={"note": [1, 2]})
    tensors, meta = load_arrays(path)
    assert meta["kind"] == kind and meta["note"] == [1, 2]
    assert sorted(tensors) == sorted(model.params)
    back, meta = load_model(path, return_metadata=True)
    _assert_same_network(model, back)
    assert meta["note"] == [1, 2]
    assert all(p.flags.writeable and p.flags.c_contiguous for p in back.params.values())


def test_the_table_names_every_kind() -> None:
    assert sorted(KINDS) == ["MLP", "MLPClassifier", "MLPRegressor", "Pipeline", "TwoLayerNet"]


def test_unknown_kind_is_refused_without_importing(tmp_path: Path) -> None:
    path = save_arrays(tmp_path / "m", {"W": np.zeros(2)}, {"kind": "os.system"})
    with pytest.raises(ModelFileError, match=r"unknown kind 'os\.system'.*knows: MLP, "):
        load_model(path)


def test_other_classes_cannot_be_saved(tmp_path: Path) -> None:
    class Wider(MLP):  # a subclass would load as its parent: refused too
        pass

    for model in (object(), Wider(3, (2,), 2, seed=0)):
        with pytest.raises(TypeError, match=f"cannot save a {type(model).__name__}"):
            save_model(tmp_path / "m", model)
    assert list(tmp_path.iterdir()) == []


def test_state_the_model_cannot_use_becomes_model_file_error(tmp_path: Path) -> None:
    path = save_arrays(tmp_path / "m", {"W1": np.zeros((2, 2))}, {"kind": "MLP"})
    with pytest.raises(ModelFileError, match=r"cannot rebuild a MLP.*layer_sizes"):
        load_model(path)


def test_two_layer_net_file_that_is_not_one_is_refused(tmp_path: Path) -> None:
    tensors, meta = load_arrays(save_model(tmp_path / "m", TwoLayerNet(4, 6, 3, seed=0)))
    save_arrays(tmp_path / "tanh", tensors, meta | {"activation": "tanh"})
    with pytest.raises(ModelFileError, match="activation 'tanh'"):
        load_model(tmp_path / "tanh")


def test_pickle_file_is_refused_by_load_model(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"W1": np.zeros(3)}))
    with pytest.raises(ModelFileError, match="not a valid handgrad model file"):
        load_model(path)


# -------------------------------------------------------------------- the one check
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"W1": np.zeros((4, 5), np.float64)}, r"tensor W1 has shape \(4, 5\) and dtype float64: "),
        ({"b2": np.zeros(4, np.float32)}, r"tensor b2 has shape \(4,\) .* fits none"),
        ({"b1": np.full(5, np.inf, np.float32)}, "tensor b1 holds non-finite values"),
        ({"W9": np.zeros(2, np.float32)}, r"holds the tensors \[.*'W9'.*needs one for each"),
    ],
)
def test_weights_that_do_not_fit_are_refused(tmp_path: Path, change, message) -> None:
    tensors, meta = load_arrays(save_model(tmp_path / "m", _mlp()))
    save_arrays(tmp_path / "bad", tensors | change, meta)
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "bad")


def test_missing_weight_is_refused(tmp_path: Path) -> None:
    tensors, meta = load_arrays(save_model(tmp_path / "m", _mlp()))
    del tensors["W3"]
    save_arrays(tmp_path / "bad", tensors, meta)
    with pytest.raises(ModelFileError, match=r"needs one for each of \['W1', 'W2', 'W3'"):
        load_model(tmp_path / "bad")


def test_check_tensors_matches_optimizer_state_by_its_parameter() -> None:
    model = _mlp()
    velocity = {f"velocity.{k}": np.zeros_like(v) for k, v in model.params.items()}
    check_tensors(velocity, model, prefix="optim.", complete=False)  # fits: no error
    check_tensors({}, model, complete=False)
    with pytest.raises(ModelFileError, match=r"tensor optim\.velocity\.W2 .* fits none"):
        check_tensors(
            velocity | {"velocity.W2": np.zeros((3, 5), np.float32)},
            model,
            prefix="optim.",
            complete=False,
        )
    with pytest.raises(ModelFileError, match=r"tensor optim\.m\.W7 .* fits none"):
        check_tensors({"m.W7": np.zeros(1)}, model, prefix="optim.", complete=False)
    with pytest.raises(ModelFileError, match="needs one for each"):
        check_tensors({}, model)


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ("best.b1", "tensor best.b1 holds non-finite values"),
        ("optim.velocity.W1", "tensor optim.velocity.W1 holds non-finite values"),
    ],
)
def test_checkpoint_state_that_does_not_fit_is_refused(tmp_path: Path, part, message) -> None:
    model = MLP(4, (5,), 3, seed=0)
    best = {k: v + 1 for k, v in model.params.items()}
    run = Run(model, SGD(0.1, momentum=0.9), np.random.default_rng(0), History(), best)
    run.optimizer.velocity = {k: np.zeros_like(v) for k, v in model.params.items()}
    tensors, meta = load_checkpoint(save_run(tmp_path / "c", run))
    assert {"best.b1", "optim.velocity.W1"} <= set(tensors)
    save_checkpoint(tmp_path / "bad", tensors | {part: np.full_like(tensors[part], np.nan)}, meta)
    with pytest.raises(ModelFileError, match=message):
        load_run(tmp_path / "bad")
    del tensors["best.W2"]
    save_checkpoint(tmp_path / "short", tensors, meta)
    with pytest.raises(ModelFileError, match=r"holds the tensors \['best\.W1', 'best\.b1'"):
        load_run(tmp_path / "short")


def test_checkpoint_of_an_estimator_is_refused(tmp_path: Path) -> None:
    run = Run(MLP(4, (5,), 3, seed=0), SGD(0.1), np.random.default_rng(0))
    tensors, meta = load_checkpoint(save_run(tmp_path / "c", run))
    meta["model"]["kind"] = "MLPClassifier"
    save_checkpoint(tmp_path / "bad", tensors, meta)
    with pytest.raises(ModelFileError, match="holds a MLPClassifier, not a network"):
        load_run(tmp_path / "bad")

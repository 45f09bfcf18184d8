"""The explain table: formulas in the notes' notation, shapes for any depth."""

import pytest

from handgrad.explain import explain, format_table, parameter_count


def _table(rows):
    return {r.quantity: (r.formula, r.shape) for r in rows}


def test_two_layer_table_is_the_notes():
    rows = explain(64, (100,), 10, 32)
    t = _table(rows)
    assert t["Z1"] == ("Z1 = X W1 + b1", "(32, 100)")
    assert t["A1"][0].startswith("A1 = ReLU(Z1)")
    assert t["S"] == ("S = A1 W2 + b2", "(32, 10)")
    assert t["P"][0].startswith("P = softmax(S)")
    assert t["L"][1] == "scalar" and "‖W1‖² + ‖W2‖²" in t["L"][0]
    assert t["dS"] == ("dS = (P − Y)/N", "(32, 10)")
    assert t["dW2"] == ("dW2 = A1ᵀ dS + λW2", "(100, 10)")
    assert t["db2"] == ("db2 = Σ_rows dS", "(10,)")
    assert t["dA1"] == ("dA1 = dS W2ᵀ", "(32, 100)")
    assert t["dZ1"] == ("dZ1 = dA1 ⊙ [Z1 > 0]", "(32, 100)")
    assert t["dW1"] == ("dW1 = Xᵀ dZ1 + λW1", "(64, 100)")
    assert t["db1"] == ("db1 = Σ_rows dZ1", "(100,)")
    assert [r.stage for r in rows].count("forward") == 5
    assert [r.quantity for r in rows if r.stage == "backward"] == [
        "dS",
        "dW2",
        "db2",
        "dA1",
        "dZ1",
        "dW1",
        "db1",
    ]


def test_three_layers_chain_through_every_layer():
    t = _table(explain(784, (256, 128), 10, 200))
    assert t["Z2"] == ("Z2 = A1 W2 + b2", "(200, 128)")
    assert t["S"] == ("S = A2 W3 + b3", "(200, 10)")
    assert t["dW3"] == ("dW3 = A2ᵀ dS + λW3", "(128, 10)")
    assert t["dA2"] == ("dA2 = dS W3ᵀ", "(200, 128)")
    assert t["dW2"] == ("dW2 = A1ᵀ dZ2 + λW2", "(256, 128)")
    assert t["dA1"] == ("dA1 = dZ2 W2ᵀ", "(200, 256)")
    assert t["dW1"] == ("dW1 = Xᵀ dZ1 + λW1", "(784, 256)")


@pytest.mark.parametrize(
    ("activation", "forward", "factor"),
    [
        ("tanh", "A1 = tanh(Z1)", "dZ1 = dA1 ⊙ (1 − A1²)"),
        ("logistic", "A1 = σ(Z1)", "dZ1 = dA1 ⊙ A1 ⊙ (1 − A1)"),
        ("identity", "A1 = Z1", "dZ1 = dA1"),
    ],
)
def test_activation_specific_derivative(activation, forward, factor):
    t = _table(explain(4, (5,), 3, 2, activation=activation))
    assert t["A1"][0].startswith(forward)
    assert t["dZ1"][0] == factor


def test_sigmoid_head_and_linear_model():
    t = _table(explain(4, (), 1, 2, head="sigmoid"))
    assert t["P"][0].startswith("P = σ(S)")
    assert t["S"] == ("S = X W1 + b1", "(2, 1)")
    assert t["dW1"] == ("dW1 = Xᵀ dS + λW1", "(4, 1)")
    assert "Z1" not in t and "dA0" not in t


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": 0}, "input size D"),
        ({"hidden_sizes": (5, -1)}, "hidden size 2"),
        ({"batch_size": 0}, "batch size N"),
        ({"activation": "softsign"}, "activation must be one of"),
        ({"head": "linear"}, "head must be one of"),
        ({"n_classes": 1}, "softmax head needs at least 2 classes"),
    ],
)
def test_bad_sizes_are_named(kwargs, message):
    args = {"input_size": 4, "hidden_sizes": (5,), "n_classes": 3, "batch_size": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        explain(**args)


def test_format_table_and_parameter_count():
    text = format_table(explain(4, (5,), 3, 2))
    lines = text.splitlines()
    assert lines[0].split() == ["pass", "quantity", "formula", "shape"]
    assert sum(set(line) <= {"-", " "} for line in lines) == 2  # header rule + pass rule
    assert parameter_count((4, 5, 3)) == 4 * 5 + 5 + 5 * 3 + 3


def test_explain_with_no_options_shows_what_handgrad_train_trains():
    from click.testing import CliRunner

    from handgrad.cli import main
    from handgrad.runs import RunConfig

    result = CliRunner().invoke(main, ["explain"])
    assert result.exit_code == 0, result.output
    config = RunConfig()
    assert config.data == "digits" and config.hidden == (128,) and config.batch_size == 64
    assert result.output.splitlines()[0] == (
        "network 64→128→10, relu hidden activation, softmax head, batch N=64"
    )
    assert "(64, 128)" in result.output and "(64, 10)" in result.output

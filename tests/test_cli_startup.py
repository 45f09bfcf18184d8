"""The `handgrad` command starts fast, and says one line whatever stops it."""

import subprocess
import sys

PY = sys.executable
HEAVY = ("sklearn", "matplotlib", "scipy", "pandas")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_and_version_import_no_heavy_library():
    for flag in ("--help", "--version"):
        done = _run(
            "import sys\n"
            "from handgrad.cli import main\n"
            "try:\n"
            f"    main([{flag!r}])\n"
            "except SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "[]", done.stdout


def test_help_lists_every_command_with_its_own_first_line():
    from click.testing import CliRunner

    from handgrad.cli import COMMANDS, main

    listed = CliRunner().invoke(main, ["--help"]).output
    for name in COMMANDS:
        command = main.get_command(None, name)
        line = next(li for li in listed.splitlines() if li.strip().startswith(name + " "))
        assert line.split(None, 1)[1].rstrip(".") in command.help.replace("\n", " ")


def test_ctrl_c_while_a_command_loads_is_one_line_and_130():
    """Ctrl-C while scikit-learn is being imported: no traceback."""
    done = _run(
        "import sys\n"
        "class Stop:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'sklearn':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "from handgrad.cli import main\n"
        "main(['train', '--epochs', '1'])\n"
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "handgrad: interrupted"  # after the line click ends ^C with


def test_exit_codes_bad_usage_2_other_errors_1(tmp_path):
    from click.testing import CliRunner

    from handgrad.cli import main

    assert CliRunner().invoke(main, ["train", "--epochs", "many"]).exit_code == 2
    assert CliRunner().invoke(main, ["nope"]).exit_code == 2
    missing = CliRunner().invoke(main, ["predict", str(tmp_path / "m"), str(tmp_path / "x")])
    assert missing.exit_code == 1 and "no such model file" in missing.stderr

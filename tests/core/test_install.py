"""The package installs as one `gradleak` package and the command line behaves."""

import subprocess
import sys

import pytest


def run(*code_or_args, cwd="/"):
    return subprocess.run([sys.executable, *code_or_args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_subpackages_import_from_outside_the_checkout():
    result = run("-c", "import gradleak.attacks, gradleak.defenses, gradleak.models, gradleak.eval; print('ok')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("name", ["models", "eval", "attacks", "defenses"])
def test_generic_folders_are_not_top_level_packages(name):
    result = run("-c", f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is not None)")
    assert result.returncode == 0, f"{name!r} is importable as a top-level package"


def test_help_and_version():
    help_text = run("-m", "gradleak", "--help")
    assert help_text.returncode == 0
    assert "list" in help_text.stdout and "demo" in help_text.stdout
    version = run("-m", "gradleak", "--version")
    assert version.returncode == 0 and version.stdout.startswith("gradleak ")


def test_list_prints_one_name_per_line_under_headings():
    result = run("-m", "gradleak", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for heading in ("attacks:", "defenses:", "models:", "datasets:"):
        assert heading in lines
    for name in ("lenet-zhu", "convnet", "resnet18", "resnet20", "mlp", "torchvision:NAME",
                 "faces", "photos", "digits", "cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder", "none"):
        assert f"  {name}" in lines


def test_user_error_is_one_line_on_stderr_with_exit_2(tmp_path):
    # Any command that meets a user mistake raises GradleakError; the CLI must turn it into one line.
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys, gradleak.commands.list as l\n"
         "from gradleak.errors import GradleakError\n"
         "def boom(args): raise GradleakError('nothing to see: fix it like so')\n"
         "l.run = boom\n"
         "from gradleak.cli import main\n"
         "sys.exit(main(['list']))"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["gradleak: error: nothing to see: fix it like so"]
    assert "Traceback" not in result.stderr


def test_every_python_folder_is_a_package_of_the_wheel():
    """An editable install finds a subpackage that setup.cfg forgot; the wheel a user installs does not."""
    import configparser
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    mapping = dict(
        (name.strip(), folder.strip())
        for name, folder in (line.split("=") for line in config["options"]["package_dir"].strip().splitlines())
    )
    listed = set(config["options"]["packages"].split())
    assert listed == set(mapping), "packages and package_dir name different packages"
    for name, folder in mapping.items():
        for init in (root / folder).rglob("__init__.py"):
            sub = init.parent.relative_to(root / folder).parts
            assert ".".join((name, *sub)) in listed, f"{init.parent} holds Python code but is not packaged"

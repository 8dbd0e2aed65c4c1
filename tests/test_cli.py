"""The ``imapscope`` console script, run as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys

from typer.testing import CliRunner

from imapscope import __version__
from imapscope.cli import app

runner = CliRunner()


def test_version_option_and_command() -> None:
    for args in (["--version"], ["version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        assert result.output.strip() == f"imapscope {__version__}"


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert "version" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_installed_console_script_and_module_entry() -> None:
    script = shutil.which("imapscope", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script, "the imapscope console script is not installed next to this Python"
    for command in ([script, "--version"], [sys.executable, "-m", "imapscope", "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        assert done.stdout.strip() == f"imapscope {__version__}"

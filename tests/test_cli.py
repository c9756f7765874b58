"""The ``sliceai`` command line: every sub-command names a handler that loads; dispatch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sliceai import cli
from sliceai.plugins import MissingDependency, load


def _commands(
    parser: argparse.ArgumentParser, prefix: str = "sliceai"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(``sliceai trace info``, its parser) for every command that has no sub-commands."""
    subactions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subactions:
        yield prefix, parser
    for action in subactions:
        for name, sub in action.choices.items():
            yield from _commands(sub, f"{prefix} {name}")


def test_every_command_names_a_handler_that_loads() -> None:
    commands = dict(_commands(cli.build_parser()))
    assert {"sliceai check-policy", "sliceai trace info", "sliceai demo"} <= set(commands)
    for name, parser in commands.items():
        spec = parser.get_default("handler")
        assert isinstance(spec, str), name
        assert ":" in spec, f"{name}: handler {spec!r} is not 'module:function'"
        try:
            handler = load(spec)
        except MissingDependency:  # an optional extra (os-ken) that is not installed
            continue
        assert callable(handler), name


def test_a_handler_is_loaded_and_called_with_the_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argparse.Namespace(command="x", handler="sliceai.policy.commands:check")
    args.files, args.quiet = [], False
    assert cli.run(args) == 0
    assert capsys.readouterr().err == ""


def test_a_missing_optional_dependency_is_exit_2_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "os_ken", None)  # as if os-ken were not installed
    monkeypatch.delitem(sys.modules, "sliceai.controller.launcher", raising=False)
    assert cli.main(["controller", "--policy", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert "sliceai controller: os-ken is not installed: pip install 'sliceai[controller]'" in err


def test_load_names_the_extra_of_a_missing_optional_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    with pytest.raises(MissingDependency, match=r"pip install 'sliceai\[dev\]'"):
        load("cvxpy")
    with pytest.raises(ModuleNotFoundError):
        load("sliceai.no_such_module")


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: sliceai" in capsys.readouterr().err

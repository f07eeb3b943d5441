"""`relay COMMAND --help` explains every argument it lists."""

from __future__ import annotations

import argparse

from orchestrator.cli import build_parser


def arguments_without_help(parser: argparse.ArgumentParser, command: str = "relay") -> list[str]:
    """`relay ui --port`, `relay validate config`: each argument of each (sub)command that shows no help text."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += arguments_without_help(sub, f"{command} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_argument_of_every_command_has_help() -> None:
    """`relay resume --stop-after`, `relay ui --port/--experiment` and `relay validate CONFIG` showed a bare name."""
    assert arguments_without_help(build_parser()) == []


def commands_without_description(parser: argparse.ArgumentParser, command: str = "relay") -> list[str]:
    """Each (sub)command whose `--help` opens with its usage alone, with no line saying what it does."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += [f"{command} {name}"] * (not sub.description)
                missing += commands_without_description(sub, f"{command} {name}")
    return missing


def test_every_command_says_what_it_does_under_its_usage() -> None:
    """`relay runs --help`, `relay resume --help` and `relay ui --help` showed usage and options only."""
    assert commands_without_description(build_parser()) == []

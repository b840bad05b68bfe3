"""The command table and the parser name the same commands."""

from __future__ import annotations

import argparse

from notifsvc import cli


def test_every_parsed_command_has_a_handler_and_every_handler_a_command() -> None:
    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(cli.COMMANDS)

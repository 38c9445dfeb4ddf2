"""What a newcomer sees in their first hour: help texts and notes as they read them."""

from __future__ import annotations

import re

from cryostream.cli import build_parser


def _helps() -> dict[str, str]:
    subparsers = build_parser()._subparsers._group_actions[0].choices
    return {name: " ".join(sub.format_help().split()) for name, sub in subparsers.items()}


def test_help_shows_defaults_as_they_are_typed():
    """A pair's default reads as the values one types (simulate's --shape showed
    ``((7676, 7420))``), no default reads ``(None)`` (evaluate's --tile did), and no help says
    a default twice (simulate's --pixel-size said ``0.6575 by default) (0.6575)``)."""
    helps = _helps()
    for name, text in helps.items():
        assert "((" not in text and "(None)" not in text, (name, re.findall(r".{40}\(\(|.{40}\(None\)", text))
    assert "--shape H W rows and columns (7676 7420)" in helps["simulate"]
    assert "(1.47 1.99)" in helps["simulate"]
    assert helps["simulate"].count("0.6575") == 1
    assert "--tile PX denoising window core, px (default: chosen for the micrograph" in helps["evaluate"]

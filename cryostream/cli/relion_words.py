"""What denoise says, in the terms of a RELION External job (:mod:`~cryostream.cli.relion_external`).

The job's user gives denoise's options as rows of the *Params* tab (a row ``overwrite`` with
the value ``yes``) and types no command; RELION makes the job's folder. So where an error, a
warning or a note names an option, the job says the row instead: ``pass --overwrite`` becomes
``add a Params row `overwrite` `yes```, ``(--permissive skips them)`` ``(a Params row
`permissive` `yes` skips them)``, ``--tile 64: smaller than …`` ``the Params row `tile` `64`:
smaller than …``, and a new output folder (``-o DIR``) is a new External job. Only the options
that the job takes as Params rows (every option of ``denoise`` but ``-o``/``--output`` and
``--help``) are said so; another command's options (``cryostream train --steps``) and words in
backticks (a command quoted whole) stay as they are.
"""

from __future__ import annotations

import re

__all__ = ["PHRASES", "InJobTerms", "params_row"]

#: Advice said whole, before the options one by one: another output folder (``-o``) is a new
#: External job, since the job's folder is RELION's (a run folder's ``-o``, ``train``'s, stays),
#: and another model (``-m another``) a Params row ``model``.
PHRASES = [(r"(?:choose|give) another output folder: -o DIR\b", "make a new External job"),
           (r"choose another -o(?![\w/-])", "make a new External job"),
           (r"into an -o folder of its own", "in an External job of its own"),
           (r"a folder of its own \(-o\)", "an External job of its own"),
           (r"(?<![\w./-])-o DIR\b", "a new External job"),
           (r"(?<![\w./-])-m another\b", "a Params row `model` naming another run")]

_OPTION = r"(?:--[a-z][a-z0-9-]*|-[a-z])(?![\w/-])"
#: An option named where the text gives advice: the words before it that the row changes.
_NAMED = re.compile(r"(?<![\w./=-])(?P<verb>(?:pass|drop|leave out) )?(?P<right>the right )?"
                    rf"(?P<option>{_OPTION})(?P<value> (?:'[^']*'|\"[^\"]*\"|[^\s,;:()]+))?")
#: Options listed together (``--voltage, --cs and --amplitude-contrast``).
_LISTED = re.compile(rf"(?<![\w./=-])(?P<verb>(?:pass|check|drop) )?(?P<options>{_OPTION}"
                     rf"(?:, {_OPTION})*,? (?:and|or) {_OPTION}|{_OPTION}(?:, {_OPTION})+)"
                     r"(?=[,;:.)]|$| \()")
#: A word that is an option's value, not the next word of the sentence.
_VALUE = re.compile(r"-?[0-9][0-9.]*(?:e[+-]?[0-9]+)?|Å|'[^']*'|\"[^\"]*\"|\S*/\S*")


def params_row(option: str, options: dict) -> tuple[str, str | None] | None:
    """The Params row that gives ``option`` (``--no-ensemble``) in the External job, as its label
    and, for an on/off option, its value (``("ensemble", "no")``); None for an option that is no
    Params row (``-o``, ``--help``, another command's). ``options``: denoise's, each option
    string with its :class:`argparse.Action`."""
    action = options.get(option)
    if action is None or option in ("-h", "--help", "-o", "--output"):
        return None
    longs = [o for o in action.option_strings if o.startswith("--")]
    label = next((o for o in longs if not o.startswith("--no-")), longs[0])[2:].replace("-", "_")
    if action.nargs != 0:
        return label, None
    return label, "no" if option.startswith("--no-") and option != f"--{label}" else "yes"


class InJobTerms:
    """A line of denoise's as the External job says it (a :data:`~cryostream.cli.signals.REWORDED`
    entry): the options it names that are Params rows said as those rows, and the advice to
    give it another output folder as a new External job. ``options``: denoise's, each option
    string with its :class:`argparse.Action`."""

    def __init__(self, options: dict):
        self.options = options

    def __call__(self, line: str) -> str:
        parts = line.split("`")  # a quoted command (``cryostream train --steps``) stays as it is
        return "`".join(part if i % 2 else self._said(part) for i, part in enumerate(parts))

    def _said(self, text: str) -> str:
        for words, instead in PHRASES:
            text = re.sub(words, instead, text)
        text = _LISTED.sub(self._listed, text)
        return _NAMED.sub(self._named, text)

    def _listed(self, match: re.Match) -> str:
        rows = [params_row(o, self.options) for o in re.findall(_OPTION, match["options"])]
        if any(row is None or row[1] is not None for row in rows):  # an on/off one: one by one
            return match[0]
        labels = [f"`{label}`" for label, _ in rows]
        joined = re.sub(_OPTION, lambda _: labels.pop(0), match["options"])
        verb = {"pass ": "add ", "drop ": "remove the ", "check ": "check the "}.get(
            match["verb"], "the ")
        return f"{verb}Params rows {joined}"

    def _named(self, match: re.Match) -> str:
        row = params_row(match["option"], self.options)
        if row is None:
            return match[0]
        label, value = row
        said, rest = f"Params row `{label}`", match["value"] or ""
        word = rest[1:].rstrip(".")
        if value is not None:
            said += f" `{value}`"
        elif self.options[match["option"]].nargs in (None, "*") and (
                _VALUE.fullmatch(word) or word in (self.options[match["option"]].choices or ())):
            rest = rest[1 + len(word):]
            said += (" with the right value" if match["right"] else "") + (
                " (in Å)" if word == "Å" else f" `{word.strip(chr(39) + chr(34))}`")
        elif match["right"]:
            said += " with the right value"
        if rest == "" and match.string.startswith(", not ", match.end()):  # a value compared
            return f"{match['verb'] or ''}{said[len('Params row '):]}"
        verb = match["verb"] or ""
        article = ("add a " if verb == "pass " else "remove the " if verb else
                   "the " if match.start() == 0 else "a ")
        return f"{article}{said}{rest}"

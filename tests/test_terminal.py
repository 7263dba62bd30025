"""Terminal output: a progress bar's line left open on a terminal is ended before any message
(a warning logged mid-bar, the error that stops a command), so no message is glued to a bar."""

import io
import logging
import sys

import pytest

from edgeseg import progress
from edgeseg.errors import DataError


class Terminal(io.StringIO):
    def isatty(self):
        return True


def terminal(monkeypatch):
    """stderr as a terminal (set in the test itself: pytest's capture resets sys.stderr after fixtures)."""
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(progress, "_open_line", None)
    return term


def open_bar():
    bar = progress.Progress(10, "work", "img")
    bar.update()  # the first update draws: the line is open on the terminal
    return bar


def test_a_warning_mid_bar_starts_a_line_of_its_own(monkeypatch):
    term = terminal(monkeypatch)
    progress.configure_logging()
    bar = open_bar()
    logging.getLogger("edgeseg.somewhere").warning("something odd")
    assert "\nwarning: something odd\n" in term.getvalue()
    assert not term.getvalue().startswith("warning")
    bar.update(9)
    bar.close()
    logging.getLogger("edgeseg.somewhere").info("after the bar")
    assert term.getvalue().count("\n\n") == 0  # a closed bar's line needs no second newline


def test_the_error_that_stops_a_command_mid_bar_starts_a_line_of_its_own(monkeypatch):
    from edgeseg import cli

    term = terminal(monkeypatch)
    def fails(**kw):
        open_bar()
        raise DataError("images/0001.png: unreadable")

    monkeypatch.setattr(cli.cli, "main", fails)
    with pytest.raises(SystemExit) as exit_:
        cli.main([])
    assert exit_.value.code == 2
    lines = term.getvalue().split("\n")
    assert lines[-2] == "error: images/0001.png: unreadable" and "work  1/10" in lines[-3]


def test_a_message_quoting_a_name_with_control_characters_stays_one_line(cli_run, tmp_path):
    """A path with a newline or an escape sequence in it, quoted by an error or a warning, is escaped:
    the message stays one line and cannot redraw the terminal."""
    odd = tmp_path / "a\nb\x1b[2J"
    odd.mkdir()
    code, _, err = cli_run("eval", "--model", odd / "m.pt")
    assert code == 2 and err.count("\n") == 1 and "a\\nb\\x1b[2J" in err and "\x1b" not in err, repr(err)
    code, _, err = cli_run("train", "--dataset", "folder", "--data", odd / "data", "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "\\n" in err, repr(err)

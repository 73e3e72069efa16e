"""The one exception type the CLI turns into a one-line message, and the helpers that word it."""

import difflib


class ImgclsError(Exception):
    """A problem the user can fix: bad input, a missing file, an unreachable source."""


class InvalidValue(ImgclsError):
    """A setting with a wrong value; `key` names it (e.g. "top_k"), so the CLI can name its flag."""

    def __init__(self, key, problem):
        super().__init__(f"{key} {problem}")
        self.key, self.problem = key, problem


def closest(name, valid):
    """The valid name `name` was most likely meant to be, or None: for "did you mean" hints."""
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return close[0] if close else None


def unknown(kind, name, valid):
    """ImgclsError for a name that is not one of `valid`, with the closest valid name as a hint."""
    guess = closest(name, valid)
    hint = f" Did you mean '{guess}'?" if guess else ""
    return ImgclsError(f"unknown {kind} '{name}'.{hint} Valid: {', '.join(valid)}")


def first_line(error):
    """An exception as one readable line: its message's first line, or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

"""Errors described for logs and health answers without what they carry.

A database error's message can quote the row it failed on, which may hold
personal data; its type and SQLSTATE say enough to act on. The full traceback
is logged at DEBUG only.
"""

from __future__ import annotations


def describe(error: BaseException) -> str:
    causes = [error]
    while causes[-1].__cause__ is not None and len(causes) < 5:
        causes.append(causes[-1].__cause__)
    names = " <- ".join(type(e).__name__ for e in causes)
    sqlstate = next((getattr(e, "sqlstate", None) for e in causes if getattr(e, "sqlstate", None)), None)
    return f"{names} (SQLSTATE {sqlstate})" if sqlstate else names

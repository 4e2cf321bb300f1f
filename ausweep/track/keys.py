"""MLflow keys from any text, and back: the one sanitiser for every metric, param and tag key.

MLflow accepts keys made of letters and digits (Unicode ``\\w``), ``_ - . /``, spaces and, except on
Windows, colons; ``.`` and ``..`` may not be a level, and ``/`` separates levels (``acc/<category>/
<subcategory>``). ausweep's keys carry user text (a question file's category "Sound & Music"), so
every key goes through :func:`mlflow_key` before it is written, and readers split keys with
:func:`split_key` to get the user's names back exactly.

The escapes use only characters MLflow accepts:

* ``@`` is ``_at_`` (``val/acc@1`` is logged as ``val/acc_at_1``, as it always was);
* any other character MLflow refuses, ``/`` inside a name, ``:`` (refused on Windows) and the
  first ``.`` of a name that is ``.`` or ``..`` is ``_x<hex code point>_`` (``&`` is ``_x26_``);
* an ``_`` that would otherwise start something that reads as an escape is itself escaped
  (``_x5f_``), so ``decode_name(encode_name(s)) == s`` for every string ``s``.

A name that needs none of this (``pitch``, ``acc_micro``, ``Sound and Music``) is its own key.
"""

from __future__ import annotations

import re

_DECODE = re.compile(r"_x([0-9a-f]{1,6})_|_at_")
_READS_AS_ESCAPE = re.compile(r"x[0-9a-f]{1,6}_|at_")  # what must not follow a literal "_"
_LOOKAHEAD = 9  # longest _READS_AS_ESCAPE match: x + 6 hex digits + _


def _plain(ch: str) -> bool:
    """A character MLflow accepts in a key on every platform, other than ``_`` and ``/``."""
    return ch.isalnum() or ch in "-. "


def encode_name(name: str) -> str:
    """``name`` as one level of an MLflow key: no ``/``, only characters MLflow accepts; reversible
    by :func:`decode_name`. The identity on names of letters, digits, ``_ - .`` and spaces that hold
    no ``_at_`` or ``_x<hex>_``."""
    tokens: list[str] = []
    head = ""  # the first characters of the encoded text to the right of the current one
    for ch in reversed(name):
        if ch == "@":
            tok = "_at_"
        elif ch == "_":
            # Decided on the encoded right-hand side, which is what the decoder will see.
            tok = "_x5f_" if _READS_AS_ESCAPE.match(head) else "_"
        elif _plain(ch):
            tok = ch
        else:
            tok = f"_x{ord(ch):x}_"
        tokens.append(tok)
        head = (tok + head)[:_LOOKAHEAD]
    out = "".join(reversed(tokens))
    if out in (".", ".."):  # a level that is a path step
        out = "_x2e_" + out[1:]
    return out


def decode_name(part: str) -> str:
    """The name that :func:`encode_name` turned into ``part``."""

    def one(m: re.Match) -> str:
        if m.group(1) is None:
            return "@"
        code = int(m.group(1), 16)
        return chr(code) if code <= 0x10FFFF else m.group(0)

    return _DECODE.sub(one, part)


def _is_key_level(level: str) -> bool:
    return level not in (".", "..") and all(_plain(ch) or ch == "_" for ch in level)


def mlflow_key(key: str) -> str:
    """The key MLflow stores for ``key``, whose ``/`` separate levels.

    A level MLflow already accepts is kept as it is (so keys built by :func:`join_key`, whose levels
    are encoded names, pass unchanged, and so do ``acc_micro`` or ``ausweep.trial_key``); any other
    level is encoded with :func:`encode_name` (``acc@1`` -> ``acc_at_1``, ``Sound & Music`` ->
    ``Sound _x26_ Music``). ``split_key(mlflow_key(k))`` gives back the levels of ``k`` unless a
    level was already a legal key holding an escape.
    """
    return "/".join(level if _is_key_level(level) else encode_name(level) for level in key.split("/"))


def join_key(*names: str) -> str:
    """A key whose levels are ``names`` taken literally (a ``/`` inside a name is escaped):
    ``join_key("acc", "Sound & Music", "pitch")`` -> ``acc/Sound _x26_ Music/pitch``."""
    return "/".join(encode_name(str(n)) for n in names)


def split_key(key: str) -> tuple[str, ...]:
    """The names in a stored key, decoded: the inverse of :func:`join_key`."""
    return tuple(decode_name(p) for p in key.split("/"))

"""The word pool of the generated phonology set: vendored common English words, less a blocklist.

Where it sits: :mod:`ausweep.knowledge_text.phonology` draws its question words from here and reads
their pronunciations from the CMU Pronouncing Dictionary. The words are ``resources/common_words.txt``
(8,514 words from ``wordfreq`` 3.1.1, SCOWL and CMUdict; how they were made is in
``resources/SOURCE.md``); the words of ``resources/blocklist.txt`` (sexual violence, slurs,
profanity; see SOURCE.md for what it blocks and why) are removed when the list is loaded.
"""

from __future__ import annotations

import functools
from importlib import resources

# Abbreviations, names and slang removed by hand when the list was made (see resources/SOURCE.md);
# none of them is in common_words.txt.
DROPPED = (
    "non etc inc tho doc rep gen sec con ken mar rev est cam cal gov ref cox ins mod tel med sox alt ops sim pro "
    "app max tom bob don lee sub min ups yep yup huh ugh yea ass asses cum bra chi glen stats gal wan thru"
)


def _resource(name: str) -> str:
    return (resources.files("ausweep.knowledge_text") / "resources" / name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def blocked_words() -> frozenset[str]:
    """The words of ``resources/blocklist.txt`` (lower-case; ``#`` lines are comments)."""
    lines = (line.strip().lower() for line in _resource("blocklist.txt").splitlines())
    return frozenset(w for w in lines if w and not w.startswith("#"))


@functools.lru_cache(maxsize=1)
def common_words() -> tuple[str, ...]:
    """The vendored words less the blocked ones, sorted."""
    blocked = blocked_words()
    return tuple(w for w in _resource("common_words.txt").split() if w not in blocked)

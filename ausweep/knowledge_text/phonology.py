"""A generated phonology set whose answers are checked against the CMU Pronouncing Dictionary.

Where it sits: one of the named sets of :mod:`ausweep.knowledge_text.sets` (``"phonology"``), scored by
:mod:`ausweep.benchmarks.scoring` in the ``knowledge_text`` study. A text-only LM can only answer
these from what it learnt about how words *sound*, which spelling alone does not give away
("cough" does not rhyme with "though").

Four subcategories, ``category="phonology"``:

* ``rhyme``: "Which word rhymes with 'cat'?" The answer is a perfect rhyme (same sounds from the
  last stressed vowel on, a different sound before it, not a homophone, neither word ending in
  the other). Distractors rhyme in none of their pronunciations; one of them is an *eye rhyme*
  (same last letters) when the pool has one.
* ``homophone``: "Which word sounds the same as 'knight'?" Pairs share their first (main)
  CMUdict pronunciation; spelling variants (gray/grey) are left out. Distractors share no
  pronunciation with the word, and one looks like it when the pool has one.
* ``stress``: "Which syllable of 'banana' carries the main stress?" (first / second / ...) and
  "Which of these words is stressed on the first syllable?". Only words whose pronunciations all
  agree on the syllable count and the stressed syllable are used.
* ``syllables``: "How many syllables are in the word 'banana'?", four consecutive counts as
  options; the answers are spread evenly over 1-5 syllables.

Question words come from :mod:`ausweep.knowledge_text.wordlist` (common words, vendored);
pronunciations from CMUdict via ``pronouncing``. :func:`generate_phonology` is deterministic for a
given seed, package versions and ``n_per_subcategory``; each subcategory draws from its own
random stream, so asking for more of one does not change the others.
"""

from __future__ import annotations

import difflib
import functools
import logging
import random
import re
from collections import defaultdict

from ausweep.benchmarks.mcq import MCItem

log = logging.getLogger(__name__)

SUBCATEGORIES = ("rhyme", "homophone", "stress", "syllables")
ORDINALS = ("first", "second", "third", "fourth", "fifth")

# Homophone pairs in the word pool that are spelling variants of one word, not two words.
SPELLING_VARIANTS = frozenset(frozenset(p) for p in (
    ("gray", "grey"), ("disc", "disk"), ("adviser", "advisor"), ("canceled", "cancelled"),
    ("judgement", "judgment"), ("licence", "license"), ("program", "programme"), ("theater", "theatre"),
    ("traveled", "travelled"), ("traveling", "travelling"), ("through", "thru"), ("though", "tho"),
))


# ----------------------------------------------------------------------------- pronunciations


@functools.lru_cache(maxsize=1)
def pronunciations() -> dict[str, tuple[str, ...]]:
    """Every CMUdict word -> its pronunciations (phone strings, main one first). About 2 s the first time."""
    import pronouncing

    pronouncing.init_cmu()
    return {w: tuple(p) for w, p in pronouncing.lookup.items()}


def rhyme_part(phones: str) -> str:
    """The sounds from the last stressed vowel to the end, stress marks removed ("K AE1 T" -> "AE T")."""
    ph = phones.split()
    for i in range(len(ph) - 1, -1, -1):
        if ph[i][-1] in "12":
            return _plain(" ".join(ph[i:]))
    return _plain(phones)  # no stressed vowel (rare function words): the whole word


def syllable_count(phones: str) -> int:
    return sum(p[-1].isdigit() for p in phones.split())


def primary_stress(phones: str) -> int | None:
    """0-based syllable with primary stress; None when there is not exactly one."""
    marks = [p[-1] for p in phones.split() if p[-1].isdigit()]
    return marks.index("1") if marks.count("1") == 1 else None


def rhymes(a: str, b: str) -> bool:
    """Whether some pronunciation of ``a`` and some of ``b`` share their rhyming part (any kind of rhyme,
    identical rhymes included); the test a distractor must fail."""
    d = pronunciations()
    return bool({rhyme_part(p) for p in d.get(a, ())} & {rhyme_part(p) for p in d.get(b, ())})


def homophones(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` share any pronunciation (stress marks included)."""
    d = pronunciations()
    return bool(set(d.get(a, ())) & set(d.get(b, ())))


def _plain(phones: str) -> str:
    return re.sub(r"\d", "", phones)


# ----------------------------------------------------------------------------- the set


def generate_phonology(n_per_subcategory: int = 100, seed: int = 0,
                       subcategories: tuple[str, ...] = SUBCATEGORIES) -> list[MCItem]:
    """``n_per_subcategory`` items of each subcategory, grouped by subcategory.

    The homophone subcategory has about 280 items at most (the pool's homophone pairs, both ways
    round); asking for more gives all of them and logs a warning.
    """
    if n_per_subcategory < 1:
        raise ValueError(f"n_per_subcategory must be >= 1, got {n_per_subcategory}")
    unknown = [s for s in subcategories if s not in SUBCATEGORIES]
    if unknown:
        raise ValueError(f"unknown phonology subcategories {unknown}; known: {list(SUBCATEGORIES)}")
    pool = _pool()
    makers = {"rhyme": _rhyme_items, "homophone": _homophone_items, "stress": _stress_items, "syllables": _syllable_items}
    items: list[MCItem] = []
    for sub in subcategories:
        rng = random.Random(f"phonology-{sub}-{seed}")
        made = makers[sub](pool, n_per_subcategory, rng)
        if len(made) < n_per_subcategory:
            log.warning("phonology/%s: only %d items available (asked for %d)", sub, len(made), n_per_subcategory)
        items += [MCItem(id=f"phonology-{sub}-{k:04d}", question=q, options=tuple(opts), answer=ans,
                         category="phonology", subcategory=sub) for k, (q, opts, ans) in enumerate(made)]
    return items


@functools.lru_cache(maxsize=1)
def _pool() -> tuple[str, ...]:
    from ausweep.knowledge_text.wordlist import common_words

    d = pronunciations()
    return tuple(w for w in common_words() if w in d)


def _shuffled(rng: random.Random, answer: str, distractors: list[str]) -> tuple[list[str], int]:
    opts = [answer, *distractors]
    rng.shuffle(opts)
    return opts, opts.index(answer)


def _pick_distractors(rng: random.Random, pool: tuple[str, ...], answer: str, ok, k: int,
                      lookalikes: list[str] = ()) -> list[str] | None:
    """``k`` words of ``pool`` passing ``ok``, each within one letter of ``answer``'s length; the first
    one drawn from ``lookalikes`` when one of them passes.

    Why the length match: answers (rhymes and homophones of common words) are shorter than random
    common words, and a model that merely prefers short options (fewer tokens, a higher summed
    log-probability) would otherwise beat chance without knowing any phonology.
    """
    def fits(w: str) -> bool:
        return abs(len(w) - len(answer)) <= 1 and ok(w)

    out: list[str] = []
    similar = [w for w in lookalikes if fits(w)]
    if similar:
        out.append(rng.choice(similar))
    near = [w for w in pool if abs(len(w) - len(answer)) <= 1]
    tries = 0
    while len(out) < k and tries < 1000:
        w = rng.choice(near)
        tries += 1
        if w not in out and fits(w):
            out.append(w)
    return out if len(out) == k else None


def _rhyme_items(pool: tuple[str, ...], n: int, rng: random.Random) -> list[tuple[str, list[str], int]]:
    d = pronunciations()
    single = {w: rhyme_part(d[w][0]) for w in pool if len({rhyme_part(p) for p in d[w]}) == 1}
    by_part: dict[str, list[str]] = defaultdict(list)
    for w, part in single.items():
        by_part[part].append(w)

    def perfect(x: str, y: str) -> bool:
        if x == y or homophones(x, y) or x.endswith(y) or y.endswith(x):
            return False
        px, py = d[x][0].split(), d[y][0].split()
        lx, ly = len(px) - len(single[x].split()), len(py) - len(single[y].split())
        before_x = _plain(px[lx - 1]) if lx > 0 else ""
        before_y = _plain(py[ly - 1]) if ly > 0 else ""
        return before_x != before_y

    targets = sorted(w for w in single if any(perfect(w, y) for y in by_part[single[w]]))
    rng.shuffle(targets)
    out = []
    for x in targets:
        if len(out) == n:
            break
        answer = rng.choice(sorted(y for y in by_part[single[x]] if perfect(x, y)))
        distractors = _pick_distractors(
            rng, pool, answer, ok=lambda w, x=x, a=answer: w not in (x, a) and not rhymes(w, x) and not rhymes(w, a), k=3,
            lookalikes=[w for w in pool if len(x) >= 3 and w[-3:] == x[-3:] and w != x])
        if distractors is None:
            continue
        opts, ans = _shuffled(rng, answer, distractors)
        out.append((f"Which word rhymes with '{x}'?", opts, ans))
    return out


def _homophone_items(pool: tuple[str, ...], n: int, rng: random.Random) -> list[tuple[str, list[str], int]]:
    d = pronunciations()
    groups: dict[str, list[str]] = defaultdict(list)
    for w in pool:
        groups[d[w][0]].append(w)
    pairs = sorted((x, y) for g in groups.values() for x in g for y in g
                   if x != y and frozenset((x, y)) not in SPELLING_VARIANTS)
    rng.shuffle(pairs)
    out = []
    for x, answer in pairs[:n]:
        distractors = _pick_distractors(
            rng, pool, answer, ok=lambda w, x=x, a=answer: w not in (x, a) and not homophones(w, x) and not homophones(w, a), k=3,
            lookalikes=[w for w in difflib.get_close_matches(x, pool, n=8, cutoff=0.75) if w != x])
        if distractors is None:
            continue
        opts, ans = _shuffled(rng, answer, distractors)
        out.append((f"Which word sounds the same as '{x}' when spoken aloud?", opts, ans))
    return out


def _agreed(word: str) -> tuple[int, int | None] | None:
    """(syllables, stressed syllable) when every pronunciation of ``word`` agrees on both, else None."""
    d = pronunciations()
    shapes = {(syllable_count(p), primary_stress(p)) for p in d[word]}
    return shapes.pop() if len(shapes) == 1 else None


def _stress_items(pool: tuple[str, ...], n: int, rng: random.Random) -> list[tuple[str, list[str], int]]:
    by_shape: dict[tuple[int, int], list[str]] = defaultdict(list)
    for w in pool:
        shape = _agreed(w)
        if shape is not None and shape[1] is not None and 2 <= shape[0] <= 4:
            by_shape[shape].append(w)  # pool order is sorted, so this is deterministic
    used: set[str] = set()
    out = []
    for k in range(4 * n):
        if len(out) == n:
            break
        if k % 2 == 0:  # which syllable of one word; the stressed position is drawn first so answers spread out
            syl = rng.choice((2, 3, 4))
            pos = rng.randrange(syl)
            words = [w for w in by_shape.get((syl, pos), []) if w not in used]
            if not words:
                continue
            w = rng.choice(words)
            used.add(w)
            out.append((f"Which syllable of the word '{w}' carries the main stress?", list(ORDINALS[:syl]), pos))
        else:  # which of four two-syllable words is stressed on the given syllable
            pos = rng.randrange(2)
            right = [w for w in by_shape[(2, pos)] if w not in used]
            wrong = by_shape[(2, 1 - pos)]
            if not right or len(wrong) < 3:
                continue
            answer = rng.choice(right)
            used.add(answer)
            opts, ans = _shuffled(rng, answer, rng.sample(wrong, 3))
            out.append((f"Which of these words is stressed on the {ORDINALS[pos]} syllable?", opts, ans))
    return out


def _syllable_items(pool: tuple[str, ...], n: int, rng: random.Random) -> list[tuple[str, list[str], int]]:
    by_count: dict[int, list[str]] = defaultdict(list)
    for w in pool:
        shape = _agreed(w)
        if shape is not None and 1 <= shape[0] <= 5:
            by_count[shape[0]].append(w)
    counts = sorted(by_count)
    used: set[str] = set()
    out = []
    for k in range(4 * n):
        if len(out) == n:
            break
        count = counts[k % len(counts)]  # answers spread evenly over the syllable counts
        words = [w for w in by_count[count] if w not in used]
        if not words:
            continue
        w = rng.choice(words)
        used.add(w)
        lo = rng.randint(max(1, count - 3), count)
        opts = [str(c) for c in range(lo, lo + 4)]
        out.append((f"How many syllables are in the word '{w}'?", opts, opts.index(str(count))))
    return out

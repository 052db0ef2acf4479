"""Rules and cues of the extractive answerer that look at words, not vectors.

The guard rules abstain whatever the confidence: a name, number or ordinal of the question
that no passage mentions ("Shenzhen", "third batch"), and a month/year of the question that the
quoted sentence contradicts ("as of October 2019" against "As of May 2019"). The cues are
confidence features: how much of the question the chosen sentence and its neighbours cover
(Snowball-stemmed, as BM25 counts words), whether the question's names are mentioned *there*
(SQuAD 2's unanswerable questions often swap one entity for another of the same article), and a
negation the question has and the sentence lacks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass

from qa.answering.citations import STOPWORDS, stem
from qa.stores.bm25 import tokenize

ORDINALS = frozenset(
    ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
)
_DEMONYM = ("ese", "ian", "an", "ish")
# "South Korea" when the text says "Republic of Korea": the direction alone is no new fact.
_NOT_KEY = frozenset(("north", "south", "east", "west", "central", "new", "old", "great"))
# Words that tell the reader what to do, not what to find: "Provide examples of ...".
INSTRUCTIONS = frozenset(
    [
        "provide",
        "explain",
        "discuss",
        "describe",
        "list",
        "summarize",
        "summarise",
        "compare",
        "contrast",
        "give",
        "identify",
        "outline",
        "define",
        "state",
        "consider",
        "evaluate",
        "analyze",
        "analyse",
        "tell",
        "show",
        "please",
        "based",
        "according",
        "using",
        "briefly",
        "mention",
        "suggest",
        "recommend",
        "note",
        "include",
        "illustrate",
        "justify",
        "assess",
    ]
)
MONTH_WORD = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December)\b"
)
YEAR = re.compile(r"\b(?:1[0-9]|20)\d{2}\b")
ORDINAL_WORD = re.compile(
    r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)\b", re.I
)
# Question kinds whose answer must appear as a span of that kind in the quote (see
# `guard_reason`), and how a message names them.
TYPED_KINDS = {"date": "date", "number": "number", "person": "name of a person or body"}
WORDS = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
# "whether or not" and "yes or no" name both sides: no negation.
_NEGATION = re.compile(
    r"(?<!\bor )\b(?:not|never|no|none|nor|without|cannot|neither)\b|n't\b", re.I
)
# A question word swapped for its opposite ("smallest" for the text's "largest") is a classic
# way to write an unanswerable question that reuses the passage's words.
_OPPOSITES = (
    ("largest", "smallest"), ("biggest", "smallest"), ("most", "least"), ("first", "last"),
    ("before", "after"), ("increase", "decrease"), ("increased", "decreased"),
    ("higher", "lower"), ("highest", "lowest"), ("more", "less"), ("north", "south"),
    ("northern", "southern"), ("east", "west"), ("eastern", "western"), ("earliest", "latest"),
    ("early", "late"), ("maximum", "minimum"), ("best", "worst"), ("longest", "shortest"),
    ("major", "minor"), ("upper", "lower"), ("win", "lose"), ("won", "lost"),
    ("oldest", "newest"), ("oldest", "youngest"), ("rich", "poor"), ("richest", "poorest"),
    ("inside", "outside"), ("import", "export"), ("imports", "exports"), ("private", "public"),
    ("above", "below"), ("start", "end"), ("began", "ended"), ("strong", "weak"),
    ("success", "failure"), ("successful", "unsuccessful"), ("allowed", "banned"),
    ("positive", "negative"), ("rural", "urban"), ("wet", "dry"), ("warm", "cold"),
    ("hot", "cold"), ("popular", "unpopular"), ("common", "rare"), ("easy", "hard"),
)  # fmt: skip
_OPPOSITE: dict[str, set[str]] = {}
for _a, _b in _OPPOSITES:
    _OPPOSITE.setdefault(_a, set()).add(_b)
    _OPPOSITE.setdefault(_b, set()).add(_a)


# The rules by name; the verifier's fitted combiner (its combiner.json) may turn some off.
GUARDS = ("absent_name", "negation", "answer_type", "date_clash", "date_elsewhere")


@dataclass(frozen=True)
class Guard:
    """A rule that forces abstention: its name (of `GUARDS`) and why, in the user's words."""

    rule: str
    message: str


def guard_reason(
    question: str,
    kind: str | None,
    quoted: str,
    context: set[str],
    all_terms: set[str],
    features: dict[str, float],
    best_score: float,
    clashing: list[tuple[float, str]],
    *,
    skip: Collection[str] = (),
) -> Guard | None:
    """Why the answerer must abstain whatever its confidence, or None. Rules named in `skip`
    (of `GUARDS`) are not applied: the fitted combiner decides those cases better.

    `quoted` is the text of the chosen sentences, `context` the terms of them and their
    neighbours, `all_terms` those of every retrieved sentence, `clashing` the (score, text) of
    sentences ranked down for naming another month/year than the question.
    """
    # A name, number or ordinal of the question that no passage holds ("Shenzhen", "third").
    if "absent_name" not in skip and (absent := absent_key_words(question, all_terms)):
        words = ", ".join(map(repr, absent[:3]))
        return Guard("absent_name", f"The documents do not mention {words}.")
    if features["negation_lost"] and "negation" not in skip:
        # SQuAD 2 writes unanswerable questions by negating a sentence of the passage
        # ("What is *not* used to ...?"): a quote that negates nothing does not answer them.
        return Guard(
            "negation", "The question asks about what is not so; the quoted sentence says what is."
        )
    if kind in TYPED_KINDS and features["cue"] == 0.0 and "answer_type" not in skip:
        # Answer-type agreement: a "when" answered by a sentence with no date, a "who" by one
        # that names nobody (besides the question's own names) does not answer it.
        return Guard(
            "answer_type",
            f"No quoted sentence holds the {TYPED_KINDS[kind]} the question asks for.",
        )
    if "date_clash" not in skip and (clash := date_clash(question, quoted, context)):
        return Guard(
            "date_clash",
            f"The quoted sentence gives {clash[1]!r}, not the question's {clash[0]!r}.",
        )
    if (
        "date_elsewhere" not in skip
        and clashing
        and (top := max(clashing))[0] > best_score
        and not holds_dates(question, quoted)
    ):
        # The best match is about another time, and the sentence chosen instead does not
        # hold the asked-for date either: the fact asked for is not in the text.
        clash = date_clash(question, top[1], set())
        assert clash is not None
        return Guard(
            "date_elsewhere",
            f"The matching sentence gives {clash[1]!r}, not the question's {clash[0]!r}.",
        )
    return None


def absent_key_words(question: str, all_terms: set[str]) -> list[str]:
    """The question's names, numbers and ordinals that no retrieved sentence mentions."""
    return [w for w in key_words(question) if not mentioned(w, all_terms)]


def key_words(question: str) -> list[str]:
    """Names (capitalised, not opening a sentence of the question, not an instruction such as
    "Provide" or "Discuss"), numbers and ordinals of the question."""
    out = []
    for m in WORDS.finditer(question):
        w = m.group()
        opens = not question[: m.start()].strip() or question[: m.start()].rstrip()[-1] in ".!?:;"
        if (
            w[0].isdigit()
            or w.lower() in ORDINALS
            or (
                w[0].isupper()
                and not opens
                and w.lower() not in STOPWORDS
                and w.lower() not in _NOT_KEY
                and w.lower() not in INSTRUCTIONS
            )
        ):
            out.append(w)
    return out


def mentioned(word: str, terms: set[str]) -> bool:
    """Whether some term starts like `word` ("Korean" finds "Korea", "Chinese" finds "China")."""
    low = word.lower()
    forms = {stem(word)[:5]} | {
        low[: -len(x)] for x in _DEMONYM if low.endswith(x) and len(low) > 5
    }
    return any(t.startswith(f) for t in terms for f in forms)


def date_clash(question: str, quoted: str, context: set[str]) -> tuple[str, str] | None:
    """A month/year/ordinal of the question that the quote and its neighbours lack while the
    quote names another one ("as of October 2019" against "As of May 2019", "the second
    batch" against "the first batch"): another time's or item's fact."""
    for pattern, asked, first in _asked_dates(question):
        named = pattern.findall(quoted)
        given = {m.lower() for m in named}
        if given and not asked & given and not any(stem(a) in context for a in asked):
            return first, named[0]
    return None


@functools.lru_cache(maxsize=256)  # called for every sentence of every passage (~30 a question)
def _asked_dates(question: str) -> tuple[tuple[re.Pattern[str], frozenset[str], str], ...]:
    """(pattern, the question's matches in lower case, its first match) for each kind of
    date the question names; most questions name none, so no quote is scanned at all."""
    kinds = []
    for pattern in (MONTH_WORD, YEAR, ORDINAL_WORD):
        found = pattern.findall(question)
        if found:
            kinds.append((pattern, frozenset(m.lower() for m in found), found[0]))
    return tuple(kinds)


def holds_dates(question: str, quoted: str) -> bool:
    """Whether the quote names every month and year the question names."""
    asked = set(MONTH_WORD.findall(question)) | set(YEAR.findall(question))
    return all(re.search(rf"\b{a}\b", quoted) for a in asked)


def word_cover(question: str, text: str) -> float:
    """Share of the question's distinct BM25 terms (stop words out, Snowball stems) in `text`."""
    asked = set(tokenize(question))
    return len(asked & set(tokenize(text))) / len(asked) if asked else 1.0


def key_cover(question: str, context_terms: set[str]) -> float:
    """Share of the question's names/numbers that the chosen sentence or its neighbours hold."""
    keys = key_words(question)
    return sum(mentioned(w, context_terms) for w in keys) / len(keys) if keys else 1.0


def negation_lost(question: str, text: str) -> float:
    """1.0 when the question negates ("never", "not") and the quoted text does not."""
    return float(bool(_NEGATION.search(question)) and not _NEGATION.search(text))


def opposite_word(question: str, text: str) -> str | None:
    """A question word whose opposite the text uses while lacking the word itself."""
    asked = {w.lower() for w in WORDS.findall(question)}
    given = {w.lower() for w in WORDS.findall(text)}
    for word in sorted(asked - given):
        if _OPPOSITE.get(word, set()) & (given - asked):
            return word
    return None

"""Question types and short-answer spans for the extractive answerer (no model, only patterns).

`question_type` reads what kind of answer a question wants ("date", "number", "person",
"place", "org", "name", or None); `candidates` finds spans of that kind in a sentence;
`short_answer` picks the one that is not already in the question and sits closest to the
words the question and the sentence share.

    >>> question_type("In what country is Normandy located?")
    'place'
    >>> s = "Normandy, a region in France."
    >>> short_answer("In what country is Normandy located?", s).text
    'France'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from qa.answering.citations import STOPWORDS, Span, content_terms, stem
from qa.answering.extractive.phrases import (
    PHRASE_PENALTY,
    Candidate,
    coordinated,
    either,
    other_than,
    phrases,
)

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan\.|Feb\.|Mar\.|Apr\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.)"
)
_DATE = re.compile(
    rf"\b{_MONTH}\s+\d{{1,2}}(?!\d)(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"  # October 28th, 2019
    rf"|\b\d{{1,2}}\s+{_MONTH}(?:\s+\d{{4}})?"  # 28 October 2019
    rf"|\b(?:early |late |mid-|the )?{_MONTH}\s+\d{{4}}"  # January 2018
    r"|\b(?:the )?(?:early |late |mid-|first half of the |second half of the )?"
    r"\d{1,2}(?:st|nd|rd|th)(?: and \d{1,2}(?:st|nd|rd|th))? centur(?:y|ies)(?: [AB]C)?"
    r"|\b\d{3,4}s\b|\b(?:1[0-9]|20)\d{2}\b(?:\s*[-–]\s*\d{2,4})?"  # 1990s, 2017, 2017-18
    r"|\b[1-9]\d{2}\b(?= AD|\s*\))|(?<=\bin )[1-9]\d{2}\b"  # 911 AD, in 911
)
_SCALE = r"(?:\s+(?:hundred|thousand|million|billion|trillion))?"
_NUMBER = re.compile(
    r"(?:about |approximately |nearly |over |more than |up to |around )?"
    rf"(?:US\$|\$|€|£|¥)\s?\d[\d,]*(?:\.\d+)?(?:bn|m|k)?\b{_SCALE}"
    rf"|\b\d[\d,]*(?:\.\d+)?(?:\s*%|\s+percent|\s+per cent)"
    rf"|\b\d[\d,]*(?:\.\d+)?{_SCALE}(?:\s+(?:yuan|dollars|euros|pounds|RMB|km|kilometres|"
    r"kilometers|miles|square miles|square kilometres|people|years|months|days|hours|"
    r"minutes|acres|feet|metres|meters|tons|tonnes|members|residents|students))?"
    r"|\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
    r"fifty|hundred|hundreds|thousands|dozens|millions)\b"
)
_CAP_WORD = r"(?:[A-Z][\w'’&.\-]*|[A-Z]{2,}|\d+(?:st|nd|rd|th)?)"
_NAMED = re.compile(
    rf"{_CAP_WORD}(?:\s+(?:(?:of|the|and|for|on|de|du|von|van|la|le|in)\s+)*{_CAP_WORD})*"
)
_QUOTED = re.compile(r"“[^”]{3,150}”|\"[^\"]{3,150}\"")
_LEADING_DROP = re.compile(
    r"^(?:(?:The|On|In|At|By|From|After|Before|During|Since|Last|This|These|That|It|Its|As|And|"
    r"But|For|With|According|However|Therefore|Thus|While|Although|Also|Moreover|Meanwhile|"
    r"Because|When|Where|If|Up|Compared|Some|Many|Most|All|A|An|There|Their|They|Other|Both|"
    r"Each|Such|Under|Through|Among|Following|Including|Then|Now|Today|Currently)(?:\s+|$))+"
)

_TYPE_CUES: tuple[tuple[str, str], ...] = (
    (
        "date",
        # "when" asks for a time where it opens the question or a clause, or is followed by
        # an auxiliary; "what to consider when implementing ..." asks for no date.
        r"(?:^|[,;:(]\s*|\b(?:and|or|but|since|until|till|by|from|exactly|precisely)\s+)when\b"
        r"|\bwhen (?:did|was|were|is|are|does|do|will|would|has|had|have|can|could|should)\b"
        r"|\bwhat (?:year|date|day|month|time|decade|century|period)\b"
        r"|\bwhich (?:year|date|day|month|decade|century)\b|\bhow long ago\b"
        r"|\bwhat (?:is|was) the date\b",
    ),
    (
        "number",
        r"\bhow (?:many|much|long|large|big|old|far|high|often|tall|fast)\b"
        r"|\bwhat (?:percentage|percent|proportion|share|number|amount|fraction|ratio)\b"
        r"|\b(?:maximum|minimum) (?:subsidy|amount|award|reward)\b|\bhow \w+ (?:is|was)\b"
        r"|\bwhat (?:is|was|are) the (?:population|size|area|total|cost|price|budget)\b",
    ),
    (
        "place",
        r"\bwhere\b|\b(?:what|which|in what|in which) (?:country|countries|city|cities|"
        r"region|state|town|province|district|place|location|continent|area|river|"
        r"island|county|capital)\b",
    ),
    (
        "person",
        r"\bwho(?:m|se)?\b|\b(?:what|which) (?:person|people|lawyer|man|woman|king|"
        r"leader|president|duke|ruler|author|scientist|official|partner)\b",
    ),
    (
        "org",
        r"\b(?:what|which) (?:\w+ )?(?:organi[sz]ations?|body|bodies|agency|committee|"
        r"company|companies|department|association|institutions?|institute|office|bank|"
        r"ministry|group|party|university|network|channel|court|team|firm|regulator)\b",
    ),
    (
        "name",
        r"\b(?:what|which) (?:\w+ )?(?:name|law|regulations?|treaty|language|religion|"
        r"document|announcement|standard|tips|title|policy|rules|notice|dynasty|"
        r"battle|war|church|ethnic|event)\b|\bwhat (?:is|was) (?:the )?\w+ called\b"
        r"|\bwhat did .* (?:issue|publish|release|announce)\b",
    ),
)
_MONEY_QUESTION = re.compile(
    r"\bhow much (?:money|funding|cash|capital)\b|\bhow much did .* (?:cost|pay|spend|lose|"
    r"earn|invest|raise)\b|\bwhat (?:is|was) the (?:cost|price|budget)\b",
    re.I,
)
_CURRENCY = re.compile(
    r"[$€£¥]|\b(?:yuan|RMB|dollars?|euros?|pounds?|yen|francs?|marks?|billion|million)\b", re.I
)
ROLE_BONUS = 1.0  # the role word pins the answer: it outweighs nearness
_AUXILIARY = frozenset(("is", "was", "are", "were", "did", "does", "do", "has", "had", "can"))
_COMPILED = tuple((kind, re.compile(p, re.I)) for kind, p in _TYPE_CUES)


def question_type(question: str) -> str | None:
    """The kind of short answer the question asks for, or None for open questions."""
    for kind, pattern in _COMPILED:
        if pattern.search(question):
            return kind
    return None


def candidates(sentence: str, kind: str | None) -> list[Span]:
    """Spans of `sentence` that could answer a question of `kind` (longest matches win)."""
    return list(_candidates(sentence, kind))


# Memoised (bounded): every question scores the same retrieved sentences again.
@functools.lru_cache(maxsize=1 << 13)
def _candidates(sentence: str, kind: str | None) -> tuple[Span, ...]:
    found: list[Span] = []
    if kind in ("date", None):
        found += _matches(_DATE, sentence)
    if kind in ("number", None):
        found += _matches(_NUMBER, sentence)
    if kind in ("person", "place", "org", "name", None):
        found += [s for s in _named(sentence)]
    if kind in ("name", "org", None):
        found += _matches(_QUOTED, sentence)
    if kind == "number":
        # "October 29th" and "by 2020" are dates, not the amount a "how many" asks for.
        dates = _matches(_DATE, sentence)
        found = [
            n for n in found
            if not re.fullmatch(r"(?:1[0-9]|20)\d{2}", n.text)
            and all(n.end <= d.start or n.start >= d.end for d in dates)
        ]  # fmt: skip
    # Keep the longest of overlapping spans; ties keep the earlier pattern.
    kept: list[Span] = []
    for span in sorted(found, key=lambda s: (-(s.end - s.start), s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return tuple(sorted(kept, key=lambda s: s.start))


def _matches(pattern: re.Pattern[str], text: str) -> list[Span]:
    return [Span(m.group(), m.start(), m.end()) for m in pattern.finditer(text)]


def _named(text: str) -> list[Span]:
    spans = []
    for m in _NAMED.finditer(text):
        value, start = m.group(), m.start()
        drop = _LEADING_DROP.match(value)
        if drop:
            value, start = value[drop.end() :], start + drop.end()
        value = value.rstrip(".,;:")
        if not re.search(r"[A-Z]", value) or value.lower() in STOPWORDS:
            continue
        spans.append(Span(value, start, start + len(value)))
    return spans


def short_answer(question: str, sentence: str, kind: str | None = None) -> Candidate | None:
    """The best short-answer span of `sentence` for `question`, or None when nothing fits.

    A candidate whose words are all in the question is not an answer ("Normandy" for a
    question about Normandy); among the rest, the one nearest the question's words wins.
    """
    kind = kind if kind is not None else question_type(question)
    if kind is None and (choice := either(question, sentence)) is not None:
        return choice
    if kind is None and not re.search(r"\b(what|which)\b", question, re.I):
        return None
    q_terms = set(content_terms(question))
    besides = other_than(question)
    words = list(re.finditer(r"[\w'’]+", sentence))
    # Where each question term occurs in the sentence, as word positions.
    where: dict[str, list[int]] = {}
    for i, m in enumerate(words):
        if m.group().lower() not in STOPWORDS and (t := stem(m.group())) in q_terms:
            where.setdefault(t, []).append(i)
    counted = _counted_noun(question) if kind == "number" else set()
    # "What kind of arches ...?" -> the word just before "arches"; "Who patronized ...?" -> the
    # name just before "patronized" (the subject).
    head, head_bonus = _role_word(question)
    head_at = [i for i, m in enumerate(words) if head and stem(m.group()) == head]
    q_prefixes = {w[:5] for w in _lower_words(question) if len(w) >= 5}
    best: Candidate | None = None
    for span, terms in _answer_spans(question, sentence, kind, q_terms):
        first = sum(1 for m in words if m.end() <= span.start)
        last = first + max(len(re.findall(r"[\w'’]+", span.text)), 1) - 1
        near = sum(
            max(1.0 / (1 + min(abs(p - first) if p < first else abs(p - last) for p in ps)), 0.0)
            for ps in where.values()
        ) / max(len(q_terms), 1)
        after = {stem(m.group()) for m in words[last + 1 : last + 5]}
        clause = _clause(sentence, span)
        in_clause = len(q_terms & set(content_terms(clause))) / max(len(q_terms), 1)
        score = (
            near
            + in_clause
            + 0.5 * bool(counted & after)
            + 0.7 * coordinated(sentence, span, besides)
            + head_bonus * any(0 < i - last <= 2 for i in head_at)
            - 0.3 * len(terms & q_terms) / max(len(terms), 1)
        )
        if kind is None and not re.search(r"[A-Z\d]", span.text):
            score -= PHRASE_PENALTY
        before = sentence[: span.start]
        if " " not in span.text and not before.strip() and not span.text.isupper():
            score -= 0.5  # "Closely", "Soon": capitalised only because it opens the sentence
        if kind != "name" and before.count("(") > before.count(")"):
            score -= 0.3  # a parenthetical aside rarely holds the answer
        if any(w[:5] in q_prefixes for w in _lower_words(span.text) if len(w) >= 5):
            score -= 0.5  # "Normanni" is a spelling of the question's "Normandy", not an answer
        if kind == "person" and re.search(r"\b(?:in|at|from|into)\s+(?:the\s+)?$", before):
            score -= 0.3  # "in England" is where, not who
        if kind == "place" and re.search(
            r"\b(?:in|at|from|near)\s+(?:the\s+)?$", sentence[: span.start]
        ):
            score += 0.3
        if best is None or score > best.score:
            best = Candidate(span.text, span.start, span.end, score)
    return best


def has_short_answer(question: str, sentence: str, kind: str) -> bool:
    """Whether `short_answer(question, sentence, kind)` finds a span, without scoring them.

    The answerer asks this of every sentence it scores (`_cue`) and wants the best span of
    one or two only: the first span that passes the filters settles it.
    """
    q_terms = set(content_terms(question))
    return next(_answer_spans(question, sentence, kind, q_terms), None) is not None


def _answer_spans(
    question: str, sentence: str, kind: str | None, q_terms: set[str]
) -> Iterator[tuple[Span, set[str]]]:
    """The candidate spans of the asked-for kind that could answer (with their terms)."""
    q_words = {w.lower() for w in re.findall(r"\w+", question)}
    found_spans = candidates(sentence, kind)
    if kind is None:
        found_spans += phrases(sentence, q_terms)
    if kind == "number" and _MONEY_QUESTION.search(question):
        # "How much money ...?" wants an amount of money, not "hundreds" of something else.
        found_spans = [f for f in found_spans if _CURRENCY.search(f.text)]
    for found in found_spans:
        span = _trim_question_words(found, q_words)
        if span is None:
            continue
        terms = set(content_terms(span.text))
        if terms and terms <= q_terms:
            continue
        if kind == "org" and " " not in span.text and not span.text.isupper():
            continue  # "Regulations" is capitalised, but an organisation has a longer name
        yield span, terms


def _lower_words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[\w'’]+", text)]


def _clause(sentence: str, span: Span) -> str:
    """The comma/semicolon-delimited piece of the sentence around the span."""
    left = max(sentence.rfind(c, 0, span.start) for c in ",;:")
    rights = [i for c in ",;:" if (i := sentence.find(c, span.end)) >= 0]
    return sentence[left + 1 : min(rights, default=len(sentence))]


def _role_word(question: str) -> tuple[str | None, float]:
    """The question word the answer should sit just before, with the bonus for doing so."""
    m = re.search(r"\b(?:what|which) (?:kind|type|sort|form|style)s? of ([\w'’-]+)", question, re.I)
    if m:
        return stem(m.group(1)), ROLE_BONUS
    m = re.match(r"\s*who ([\w'’-]+)", question, re.I)
    if m and m.group(1).lower() not in STOPWORDS and m.group(1).lower() not in _AUXILIARY:
        return stem(m.group(1)), ROLE_BONUS
    return None, 0.0


def _counted_noun(question: str) -> set[str]:
    """The stemmed words after "how many"/"how much" (what is being counted)."""
    m = re.search(r"\bhow (?:many|much)\s+((?:[\w'’-]+\s*){1,3})", question, re.I)
    return set(content_terms(m.group(1))) if m else set()


def _trim_question_words(span: Span, q_words: set[str]) -> Span | None:
    """Drop a trailing "of Normandy" / leading "Normandy's" that only repeats the question."""
    text, start = span.text, span.start
    m = re.search(r"\s+(?:of|in|for|on)\s+(?:the\s+)?([\w'’ ]+)$", text)
    if m and all(w.lower() in q_words for w in re.findall(r"\w+", m.group(1))):
        text = text[: m.start()]
    words = text.split()
    while len(words) > 1 and words[0].lower().strip("'’s") in q_words:
        cut = text.index(words[1], len(words[0]))
        text, start, words = text[cut:], start + cut, words[1:]
    return Span(text, start, start + len(text)) if text.strip() else None

"""Errors people make, injected into clean text, and word-level scoring of a checker's flags.

``corrupt(text, rng, rate)`` picks words and changes them; it returns the new text and the
character spans of the changed words (the word a reader should see underlined):
  * typos in a word of four or more letters: a letter dropped, doubled, two neighbours swapped,
    or a letter replaced by a neighbour on a QWERTY keyboard;
  * a common misspelling (``MISSPELLINGS``: "receive" -> "recieve");
  * a doubled word ("the the": the second one is the error);
  * a real-word confusion (``CONFUSIONS``: their / there, its / it's, ...).
Only plain words are touched (letters only, lower case or capitalised), never code, numbers or
names in capitals. ``words(text)`` splits a text into words (runs of non-spaces, without the
punctuation around them) and ``score`` counts, per word, flagged against changed.
"""

import re

KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def _neighbours():
    pos = {c: (r, i) for r, row in enumerate(KEYBOARD) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in pos.items():
        out[c] = [d for d, (r2, j) in pos.items() if d != c and abs(r2 - r) <= 1
                  and abs(j + 0.5 * r2 - i - 0.5 * r) <= 1.0]
    return out


NEIGHBOURS = _neighbours()

MISSPELLINGS = {
    "receive": "recieve", "believe": "beleive", "separate": "seperate", "definitely": "definately",
    "occurred": "occured", "until": "untill", "which": "wich", "the": "teh",
    "accommodate": "accomodate", "beginning": "begining", "calendar": "calender",
    "existence": "existance", "government": "goverment", "independent": "independant",
    "necessary": "neccessary", "occasion": "occassion", "publicly": "publically",
    "referred": "refered", "successful": "succesful", "tomorrow": "tommorow", "truly": "truely",
    "weird": "wierd", "argument": "arguement", "environment": "enviroment",
    "dependency": "dependancy", "compatible": "compatable", "consistent": "consistant",
    "maintenance": "maintainance", "occurrence": "occurence", "recommend": "reccomend",
    "relevant": "relevent", "similar": "similiar", "because": "becuase", "different": "diffrent",
    "especially": "especialy", "immediately": "immediatly", "interesting": "intresting",
    "knowledge": "knowlege", "length": "lenght", "grammar": "grammer", "privilege": "priviledge",
    "their": "thier", "basically": "basicly", "completely": "completly",
    "delicious": "delicous",
}

CONFUSIONS = {
    "their": "there", "there": "their", "its": "it's", "it's": "its", "your": "you're",
    "you're": "your", "then": "than", "than": "then", "affect": "effect", "effect": "affect",
    "lose": "loose", "loose": "lose", "whose": "who's",
}

_WORD = re.compile(r"\S+")
_CORE = re.compile(r"[A-Za-z][A-Za-z']*[A-Za-z]|[A-Za-z]")
_PLAIN = re.compile(r"^[A-Za-z][a-z']*$")


def words(text):
    """(start, end) character spans of the words of `text`: runs of non-spaces without the
    punctuation around them (runs with no letter or digit are not words)."""
    out = []
    for m in _WORD.finditer(text):
        s, e = m.start(), m.end()
        while s < e and not text[s].isalnum():
            s += 1
        while e > s and not text[e - 1].isalnum():
            e -= 1
        if s < e:
            out.append((s, e))
    return out


def _typo(w, rng):
    kind = rng.randrange(4)
    i = rng.randrange(1, len(w)) if kind != 2 else rng.randrange(1, len(w) - 1)
    if kind == 0:  # dropped
        return w[:i] + w[i + 1:]
    if kind == 1:  # doubled
        return w[:i] + w[i] + w[i:]
    if kind == 2:  # swapped
        if w[i] == w[i + 1]:
            return None
        return w[:i] + w[i + 1] + w[i] + w[i + 2:]
    near = NEIGHBOURS.get(w[i].lower())  # mistyped
    if not near:
        return None
    c = rng.choice(near)
    return w[:i] + (c.upper() if w[i].isupper() else c) + w[i + 1:]


def _match_case(src, new):
    return new[:1].upper() + new[1:] if src[:1].isupper() else new


def corrupt(text, rng, rate=0.04, real_word=True):
    """Returns (new_text, [(start, end), ...]): the changed words' spans in new_text."""
    out, spans, pos = [], [], 0
    length = 0
    for s, e in words(text):
        w = text[s:e]
        if not _PLAIN.match(w) or rng.random() >= rate:
            continue
        lower = w.lower()
        choice = rng.random()
        new, doubled = None, False
        if lower in MISSPELLINGS and choice < 0.6:
            new = _match_case(w, MISSPELLINGS[lower])
        elif real_word and lower in CONFUSIONS and choice < 0.8:
            new = _match_case(w, CONFUSIONS[lower])
        elif choice < 0.1 and len(w) <= 6:
            doubled = True
        elif len(w) >= 4:
            new = _typo(w, rng)
        if new is None and not doubled:
            continue
        out.append(text[pos:s])
        length += s - pos
        if doubled:
            out.append(w + " ")
            length += len(w) + 1
            spans.append((length, length + len(w)))
            out.append(w)
            length += len(w)
        else:
            spans.append((length, length + len(new)))
            out.append(new)
            length += len(new)
        pos = e
    out.append(text[pos:])
    return "".join(out), spans


def overlaps(span, spans):
    s, e = span
    return any(a < e and s < b for a, b in spans)


def score(counts, gold, flagged):
    """Adds one document's word-level counts: gold and flagged are sets of word indices."""
    counts["tp"] += len(gold & flagged)
    counts["fp"] += len(flagged - gold)
    counts["fn"] += len(gold - flagged)


def metrics(counts, beta=0.5):
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    b2 = beta * beta
    f = (1 + b2) * p * r / (b2 * p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f0.5": f, **counts}

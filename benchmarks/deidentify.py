"""Measure de-identification on the synthetic qualitative corpus: recall by kind, review-list rate, speed.

Builds the corpus (``tasks.demo.qualitative.make_corpus``), de-identifies every transcript as
``transcripts import`` does (the register's people with their display names, the corpus
deny-list, the default team labels; turns read by ``tasks.transcripts.parse``) and checks every
planted identifier: it is *found* when, in every turn of its session whose raw words contain it,
the de-identified words no longer contain it (whole word, any case) and do contain the expected
replacement (the participant's pseudonym, ``[name]``, ``[tag]``, ``[email]`` ...). Also reports
review-list entries per 1,000 words (each term once per turn, as the review list file holds them),
milliseconds per 1,000 words, how many planted other names and deny-list terms the review list
alone would show if the register had no other names and there were no deny-list (the safety net's
catch), and the time to de-identify one 10,000-word transcript against a deny-list of several
thousand terms. Prints a table; ``--json PATH`` writes the figures.

    python benchmarks/deidentify.py --json var/deidentify.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.demo.qualitative import SyntheticCorpus, make_corpus  # noqa: E402
from tasks.qualitative.model import Names  # noqa: E402
from tasks.qualitative.register import display_names  # noqa: E402
from tasks.transcripts.deidentify import PLACEHOLDER, Deidentifier, Person  # noqa: E402
from tasks.transcripts.parse import parse_transcript  # noqa: E402

KINDS = ("name", "other_name", "deny", "email", "phone", "postcode", "url", "date", "nhs_number")
SCALE_WORDS = 10_000
_POSSESSIVE = re.compile(r"['\u2019]s$")


def corpus_people(corpus: SyntheticCorpus) -> list[Person]:
    """The register's people as intake builds them (display name = pseudonym or "Practitioner N")."""
    shown = display_names(corpus.register_rows)
    return [Person(row["participant_id"], shown[row["participant_id"]],
                   Names(" ".join(row["full_name"].split()),
                         tuple(n.strip() for n in row["other_names"].split(";") if n.strip())))
            for row in corpus.register_rows]


def corpus_turns(corpus: SyntheticCorpus) -> dict[str, list[str]]:
    """Raw speaker-turn words per session, read as intake reads them."""
    sessions: dict[str, list[str]] = {}
    for member, data in sorted(corpus.transcripts.items()):
        session_id, fmt = member.rsplit(".", 1)
        sessions[session_id] = [turn.words for turn in parse_transcript(data, fmt, session_id, member)]
    return sessions


def _whole(text: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(text) + r"(?!\w)", re.IGNORECASE)


def expected_replacements(corpus: SyntheticCorpus, people: Sequence[Person], kind: str, text: str) -> set[str]:
    """What a planted identifier should become (several when a name is shared)."""
    if kind == "other_name":
        return {PLACEHOLDER["other_name"]}
    if kind == "deny":
        key = text.casefold()
        return {f"[{tag}]" for term, tag in corpus.deny_list if term.casefold() == key}
    if kind != "name":
        return {PLACEHOLDER[kind]}
    bare = _POSSESSIVE.sub("", text).casefold()
    owners = {p.pseudonym for p in people
              if bare == p.names.full_name.casefold() or bare in p.names.full_name.casefold().split()}
    return owners if len(owners) == 1 else {"[name]"}


def planted_found(raw: Sequence[str], redacted: Sequence[str], text: str, expected: set[str],
                  inside: Sequence[str] = ()) -> bool:
    """Every turn that held ``text`` no longer holds it and holds an expected replacement.

    An occurrence within a longer planted identifier (``inside``: a first name in an e-mail
    address) counts as that identifier's, which is replaced whole.
    """
    pattern = _whole(text)
    turns = []
    for i, words in enumerate(raw):
        for longer in inside:
            words = re.sub(re.escape(longer), " ", words, flags=re.IGNORECASE)
        if pattern.search(words):
            turns.append(i)
    return bool(turns) and all(not pattern.search(redacted[i]) and any(e in redacted[i] for e in expected)
                               for i in turns)


def measure(corpus: SyntheticCorpus) -> dict[str, Any]:
    """Recall per planted kind, review-list entries and time per 1,000 words on one corpus."""
    people = corpus_people(corpus)
    deidentifier = Deidentifier(people, dict(corpus.deny_list))
    raw = corpus_turns(corpus)
    redacted: dict[str, list[str]] = {}
    replacements: Counter[str] = Counter()
    review_entries, words, seconds = 0, 0, 0.0
    for session_id, turns in raw.items():
        redacted[session_id] = []
        for words_of_turn in turns:
            start = time.perf_counter()
            result = deidentifier.redact(words_of_turn)
            seconds += time.perf_counter() - start
            text = " ".join(result.text.split())
            redacted[session_id].append(text)
            replacements.update(result.counts)
            review_entries += len(deidentifier.review(text))
            words += len(words_of_turn.split())
    kinds: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        items = [p for p in corpus.planted if p.kind == kind]
        found = sum(planted_found(raw[p.session_id], redacted[p.session_id], p.text,
                                  expected_replacements(corpus, people, p.kind, p.text),
                                  [q.text for q in corpus.planted
                                   if q.kind != p.kind and p.text.casefold() in q.text.casefold()])
                    for p in items)
        kinds[kind] = {"planted": len(items), "found": found,
                       "recall_percent": round(100.0 * found / len(items), 1) if items else 100.0}
    return {"sessions": len(raw), "turns": sum(len(t) for t in raw.values()), "words": words,
            "kinds": kinds, "replacements": dict(sorted(replacements.items())),
            "review_entries": review_entries,
            "review_per_1000_words": round(1000.0 * review_entries / words, 2) if words else 0.0,
            "ms_per_1000_words": round(1000.0 * 1000.0 * seconds / words, 2) if words else 0.0}


def review_catch(corpus: SyntheticCorpus) -> dict[str, dict[str, int]]:
    """With no other names and no deny-list: how many of those planted items the review list shows.

    An item is *listed* when, in every turn that holds it, at least one of its words is on that
    turn's review list (a word at the start of a sentence is never listed, by the spec's rule).
    """
    people = [Person(p.participant_id, p.pseudonym, Names(p.names.full_name, ())) for p in corpus_people(corpus)]
    deidentifier = Deidentifier(people, {})
    raw = corpus_turns(corpus)
    reviewed = {session_id: [[t.casefold() for t in deidentifier.review(" ".join(deidentifier.redact(w).text.split()))]
                             for w in turns] for session_id, turns in raw.items()}
    out: dict[str, dict[str, int]] = {}
    for kind in ("other_name", "deny"):
        items = [p for p in corpus.planted if p.kind == kind]
        listed = 0
        for item in items:
            words = {_POSSESSIVE.sub("", w).casefold() for w in item.text.split()}
            holding = [i for i, w in enumerate(raw[item.session_id]) if _whole(item.text).search(w)]
            listed += bool(holding) and all(words & set(reviewed[item.session_id][i]) for i in holding)
        out[kind] = {"planted": len(items), "listed": listed}
    return out


def scale(corpus: SyntheticCorpus, deny_terms: int) -> dict[str, Any]:
    """Seconds to de-identify one 10,000-word transcript with a deny-list of ``deny_terms`` terms."""
    turns = [words for session in corpus_turns(corpus).values() for words in session]
    text, count, i = [], 0, 0
    while count < SCALE_WORDS:
        text.append(turns[i % len(turns)])
        count += len(turns[i % len(turns)].split())
        i += 1
    deny = dict(corpus.deny_list)
    deny.update({f"Synthetic Place {n} Road": "street" for n in range(deny_terms - len(deny))})
    start = time.perf_counter()
    deidentifier = Deidentifier(corpus_people(corpus), deny)
    built = time.perf_counter() - start
    start = time.perf_counter()
    result = deidentifier.redact(" ".join(text))
    redact_seconds = time.perf_counter() - start
    start = time.perf_counter()
    deidentifier.review(result.text)
    review_seconds = time.perf_counter() - start
    return {"words": count, "deny_terms": len(deny), "build_seconds": round(built, 3),
            "redact_seconds": round(redact_seconds, 3), "review_seconds": round(review_seconds, 3)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2021, help="corpus seed (default 2021)")
    parser.add_argument("--deny-terms", type=int, default=5000, help="deny-list size of the scale run")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    corpus = make_corpus(args.seed)
    figures = measure(corpus)
    figures["seed"] = args.seed
    figures["review_catch"] = review_catch(corpus)
    figures["scale"] = scale(corpus, args.deny_terms)
    print(f"synthetic corpus seed {args.seed}: {figures['sessions']} sessions, {figures['turns']} turns, "
          f"{figures['words']} words")
    print(f"{'kind':<12}{'planted':>9}{'found':>7}{'recall %':>10}")
    for kind, row in figures["kinds"].items():
        print(f"{kind:<12}{row['planted']:>9}{row['found']:>7}{row['recall_percent']:>10.1f}")
    print(f"review-list entries: {figures['review_entries']} ({figures['review_per_1000_words']} per 1,000 words)")
    print(f"de-identification: {figures['ms_per_1000_words']} ms per 1,000 words")
    catch = ", ".join(f"{kind} {row['listed']} of {row['planted']}" for kind, row in figures["review_catch"].items())
    print(f"without other names and deny-list, items the review list shows: {catch}")
    s = figures["scale"]
    print(f"one {s['words']}-word transcript, {s['deny_terms']} deny-list terms: build {s['build_seconds']} s, "
          f"redact {s['redact_seconds']} s, review {s['review_seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

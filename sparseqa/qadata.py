"""A generated extractive question-answering set: invented people and places, templated facts, paraphrased questions.

Every passage holds several facts about several invented people and places, in shuffled order, with filler
sentences between them; every question asks for one fact, worded one of several ways, and its answer (1 to 5 words:
a name, a place, a date, a year, a quantity, a trade, an organisation) is an exact substring of the passage. Some
passages are longer than one 384-token window, so answering them needs the windowed decoding. Everything follows
from one seed: the same seed gives the same passages, questions and answers.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

FIRST_NAMES = (
    "Adela Alwin Anika Bertil Brana Cassia Corvin Dagny Edric Elsa Eskil Fenna Gideon Greta Halvard Hedda Ilse Ivo "
    "Jorun Kasimir Leona Linus Magda Milos Nadia Odo Olina Per Quentin Rosalind Runa Sabine Sten Talia Tobias Ulla "
    "Valter Vera Wendel Xenia Yorick Zora"
).split()
SURNAME_HEADS = "Ash Bram Corr Dal Elm Fen Gor Hal Isen Kel Lund Mor Nor Ost Pell Quar Rav Sel Tor Vand Wes Yar".split()
SURNAME_TAILS = "berg mark ley wick stad holm ford ven".split()
PLACE_HEADS = "Tars Wel Brin Cald Dorn Falk Grav Hollin Kirr Lom Marr Nes Orl Pim Rund Sorr Tull Varn Wyn Zell".split()
PLACE_TAILS = "by mouth haven field dale stead ton wick".split()
RIVERS = "Ostra Velm Kessa Drun Allar Semmer Brisk Tamma Orvid Lusk".split()
MONTHS = "January February March April May June July August September October November December".split()
TRADES = (
    "glass engraver|ship carpenter|botanist|clock maker|river pilot|printer|stone mason|lighthouse keeper|"
    "school teacher|surveyor|bookbinder|beekeeper|organ builder|ferry captain|map maker|weaver|brewer|"
    "railway engineer|court painter|tax collector"
).split("|")
ORG_KINDS = (
    "Rowing Club|Trading Company|Choir|Savings Bank|Society of Clock Makers|Museum of Local History|"
    "School of Navigation|Botanical Garden|Academy of Fine Arts|Printing House|Fire Brigade|Chess Club"
).split("|")
ANIMALS = "sheep goats cows horses pigs geese".split()
BUILDINGS = "bell tower|old lighthouse|town hall|stone bridge|grain mill|harbour wall".split("|")
FILLERS = (
    "The winters there were long, and the roads were often closed for weeks.",
    "Little else is recorded about those years.",
    "Letters from that time survive in the regional archive.",
    "Visitors still remark on the narrow streets and the smell of the sea.",
    "Several of the old houses were later rebuilt after a fire.",
    "The local newspaper reported the news only briefly.",
    "Few travellers passed through the valley in those days.",
    "Many of the records were lost when the archive flooded.",
    "The market was held every second Saturday near the church.",
    "Historians disagree about how much of the story is true.",
    "The family kept a small garden behind the house.",
    "A painting of the harbour from that period hangs in the library.",
    "Neighbours described the household as quiet and orderly.",
    "The summers were short but warm enough for two harvests.",
    "Most of the furniture from the old house has since been sold.",
    "A diary from those years was found in an attic much later.",
    "The church bells were melted down during a long war.",
    "Bread and salt fish were the usual meal on weekdays.",
    "Some accounts of the period were written down only decades afterwards.",
    "The old road along the coast was washed away by storms.",
    "People in the area still tell stories about that time.",
    "The school had a single room and one stove for heating.",
    "Prices rose sharply after a poor harvest.",
    "A travelling theatre company visited every autumn.",
    "The harbour froze over in the coldest winters.",
    "Several photographs from that era are kept in a museum.",
    "Wolves were still seen in the forests at the time.",
    "The postal service reached the valley only once a week.",
    "A small fair with music and dancing was held each spring.",
    "The mill by the stream ground grain for the whole district.",
    "Many young people left to find work in the cities.",
    "Fishing boats were repaired on the beach during the winter.",
    "The town council met in a room above the bakery.",
    "Rain fell for most of that year, and the fields flooded twice.",
    "A new bridge shortened the journey to the coast by a day.",
    "Local songs from the period are still sung at weddings.",
)
LONG_PASSAGE_EVERY = 5
PERSON_FACT_KINDS = 8
PLACE_FACT_KINDS = 3


@dataclass(frozen=True)
class Question:
    """One question about a passage, with its answer and where the answer starts in the passage."""

    id: str
    question: str
    answer: str
    answer_start: int


@dataclass(frozen=True)
class Passage:
    """A generated passage and the questions asked about it."""

    title: str
    context: str
    questions: tuple[Question, ...]
    long: bool  # written to be longer than one 384-token window


@dataclass(frozen=True)
class _Fact:
    sentence: str
    answers: tuple[tuple[str, tuple[str, ...]], ...]  # (answer text, the questions it answers)
    types: frozenset[str] = frozenset()  # the kinds of its answers: "place", "year", "number"...


def _surnames() -> list[str]:
    return [head + tail for head in SURNAME_HEADS for tail in SURNAME_TAILS]


def _places() -> list[str]:
    return [head + tail for head in PLACE_HEADS for tail in PLACE_TAILS]


def _date(rng: random.Random, year: int) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {year}"


def _person_facts(rng: random.Random, name: str, people: list[str], places: list[str]) -> list[_Fact]:
    """One fact of every kind about one person, always in the same order of kinds."""
    born = rng.randint(1700, 1920)
    birthplace, home, wedding = rng.sample(places, 3)
    # Someone outside the passage: a spouse who is also a subject there could be "married" twice, inconsistently.
    spouse = f"{rng.choice(FIRST_NAMES)} {rng.choice(_surnames())}"
    while spouse in people:
        spouse = f"{rng.choice(FIRST_NAMES)} {rng.choice(_surnames())}"
    trade = rng.choice(TRADES)
    org = f"{rng.choice(places)} {rng.choice(ORG_KINDS)}"
    founded, moved = born + rng.randint(20, 50), born + rng.randint(15, 45)
    date = _date(rng, born)
    age, herd, animal = rng.randint(40, 99), rng.randint(3, 900), rng.choice(ANIMALS)
    article = "an" if trade[0] in "aeiou" else "a"
    candidates = [
        _Fact(
            rng.choice([f"{name} was born in {birthplace}.", f"{name} was born in the town of {birthplace}."]),
            ((birthplace, (f"Where was {name} born?", f"In which town was {name} born?",
                           f"What is the birthplace of {name}?", f"{name} was born in which town?")),),
            frozenset({"place"}),
        ),
        _Fact(
            rng.choice([f"{name} was born on {date}.", f"The records give {date} as the birth date of {name}."]),
            ((date, (f"When was {name} born?", f"On what date was {name} born?",
                     f"What is the date of birth of {name}?", f"What day was {name} born?")),),
            frozenset({"year"}),
        ),
        _Fact(
            rng.choice([f"{name} worked as {article} {trade}.", f"By trade, {name} was {article} {trade}.",
                        f"For most of their life {name} earned a living as {article} {trade}."]),
            ((trade, (f"What did {name} work as?", f"What was the trade of {name}?",
                      f"What was the occupation of {name}?", f"How did {name} earn a living?")),),
            frozenset({"trade"}),
        ),
        _Fact(
            rng.choice([f"In {founded}, {name} founded the {org}.", f"{name} founded the {org} in {founded}."]),
            ((org, (f"What did {name} found?", f"Which organisation was founded by {name}?",
                    f"What was founded by {name}?")),
             (str(founded), (f"In what year did {name} found the {org}?", f"When did {name} found the {org}?",
                             f"When was the {org} founded?"))),
            frozenset({"organisation", "year"}),
        ),
        _Fact(
            rng.choice([f"{name} married {spouse} in {wedding}.", f"In {wedding}, {name} married {spouse}."]),
            ((spouse, (f"Who did {name} marry?", f"Whom did {name} marry?", f"Who was the spouse of {name}?")),
             (wedding, (f"Where did {name} marry {spouse}?", f"In which town did {name} marry?"))),
            frozenset({"person", "place"}),
        ),
        _Fact(
            rng.choice([f"In {moved}, {name} moved to {home}.", f"{name} moved to {home} in {moved}."]),
            ((home, (f"Where did {name} move in {moved}?", f"To which town did {name} move?",
                     f"Where did {name} move to?")),
             (str(moved), (f"When did {name} move to {home}?", f"In what year did {name} move to {home}?"))),
            frozenset({"place", "year"}),
        ),
        _Fact(
            rng.choice([f"{name} kept {herd} {animal} on a farm near {home}.",
                        f"On the farm, {name} kept a herd of {herd} {animal}."]),
            ((f"{herd} {animal}", (f"How many animals did {name} keep?", f"What did {name} keep on the farm?")),),
            frozenset({"count"}),
        ),
        _Fact(
            rng.choice([f"{name} died at the age of {age}.", f"{name} lived to the age of {age}."]),
            ((str(age), (f"At what age did {name} die?", f"How old was {name} at death?",
                         f"How old did {name} live to be?")),),
            frozenset({"number"}),
        ),
    ]
    return candidates


def _place_facts(rng: random.Random, place: str, places: list[str]) -> list[_Fact]:
    """One fact of every kind about one place, always in the same order of kinds."""
    other = rng.choice([town for town in places if town != place])
    river = f"{rng.choice(RIVERS)} River"
    building = rng.choice(BUILDINGS)
    height, distance, population = rng.randint(8, 140), rng.randint(3, 300), rng.randint(200, 90000)
    direction = rng.choice(["north", "south", "east", "west"])
    candidates = [
        _Fact(
            f"{place} lies on the {river}, {distance} kilometres {direction} of {other}.",
            ((river, (f"On which river does {place} lie?", f"What river is {place} on?")),
             (f"{distance} kilometres", (f"How far is {place} from {other}?",
                                         f"What is the distance between {place} and {other}?"))),
            frozenset({"river", "distance"}),
        ),
        _Fact(
            rng.choice([f"The {building} in {place} is {height} metres tall.",
                        f"At {height} metres, the {building} of {place} can be seen from far away."]),
            ((f"{height} metres", (f"How tall is the {building} in {place}?",
                                   f"What is the height of the {building} of {place}?")),),
            frozenset({"height"}),
        ),
        _Fact(
            rng.choice([f"{place} has a population of {population}.", f"About {population} people live in {place}."]),
            ((str(population), (f"What is the population of {place}?", f"How many people live in {place}?")),),
            frozenset({"number"}),
        ),
    ]
    return candidates


def generate_passage(rng: random.Random, index: int, *, long: bool = False) -> Passage:
    """One passage of facts about one person (several when ``long``), a few places, and filler sentences.

    Each kind of answer (a town, a year or date, a person, a bare number...) appears as an answer at most once in a
    passage, so a question is answered by reading what kind of thing it asks for wherever that fact stands: telling
    apart which town a verb (born, moved, married) refers to takes a small model far more steps than a build may take.
    """
    surnames, places = _surnames(), _places()
    people_count = rng.randint(3, 4) if long else 1
    first_names = rng.sample(FIRST_NAMES, people_count)
    people = [f"{first} {last}" for first, last in zip(first_names, rng.sample(surnames, people_count))]
    person_kinds = list(range(PERSON_FACT_KINDS))
    rng.shuffle(person_kinds)
    wanted = PERSON_FACT_KINDS if long else rng.randint(3, 6)
    known = [_person_facts(rng, person, people, places) for person in people]
    facts: list[_Fact] = []
    answer_types: set[str] = set()
    for position, kind in enumerate(person_kinds):
        fact = known[position % people_count][kind]
        if len(facts) < wanted and answer_types.isdisjoint(fact.types):
            facts.append(fact)
            answer_types |= fact.types
    place_kinds = rng.sample(range(PLACE_FACT_KINDS), PLACE_FACT_KINDS if long else rng.randint(0, 2))
    for kind in place_kinds:
        fact = _place_facts(rng, rng.choice(places), places)[kind]
        if answer_types.isdisjoint(fact.types):
            facts.append(fact)
            answer_types |= fact.types
    facts += [_Fact(filler, ()) for filler in rng.sample(FILLERS, rng.randint(26, 32) if long else rng.randint(0, 3))]
    rng.shuffle(facts)
    context, questions = "", []
    for fact in facts:
        sentence_start = len(context) + (1 if context else 0)
        context = f"{context} {fact.sentence}" if context else fact.sentence
        for answer, wordings in fact.answers:
            start = sentence_start + fact.sentence.index(answer)
            questions.append(Question(f"{index}-{len(questions)}", rng.choice(wordings), answer, start))
    return Passage(f"passage {index}", context, tuple(questions), long)


def generate(seed: str, passages: int) -> list[Passage]:
    """``passages`` passages from ``seed``; every fifth is longer than one 384-token window."""
    rng = random.Random(seed)  # a str seed is hashed with SHA-512: the same passages in every process
    return [
        generate_passage(rng, index, long=index % LONG_PASSAGE_EVERY == LONG_PASSAGE_EVERY - 1)
        for index in range(passages)
    ]


def write_squad(passages: list[Passage], path: Path) -> int:
    """Write ``passages`` and their questions as a SQuAD v1.1 JSON file; the number of questions written."""
    paragraphs = [
        {
            "context": passage.context,
            "qas": [
                {"id": q.id, "question": q.question, "answers": [{"text": q.answer, "answer_start": q.answer_start}]}
                for q in passage.questions
            ],
        }
        for passage in passages
    ]
    data = {"version": "1.1", "data": [{"title": "sparseqa generated facts", "paragraphs": paragraphs}]}
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return sum(len(paragraph["qas"]) for paragraph in paragraphs)

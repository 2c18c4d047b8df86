"""Generated text for the convergence cases: a pre-training corpus and a capital-city instruction set.

Everything is generated from :data:`COUNTRIES` with a fixed seed, and the tokenizer is trained locally with
the ``tokenizers`` library (byte-level BPE, as GPT-2's), so nothing is ever downloaded.

- Pre-training corpus: generic sentences that state each country's capital in several phrasings (for every
  country, held-out ones included), mixed with sentences that only mention countries or cities, so the
  model must actually bind each capital to its country.
- Instruction set: ``"Question: What is the capital of X?\\nAnswer: Y"``. Fine-tuning sees only the
  training countries; the held-out countries measure whether the newly learnt format reaches facts the
  model only saw in pre-training.
"""

from __future__ import annotations

import random

COUNTRIES: tuple[tuple[str, str], ...] = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Greece", "Athens"), ("Austria", "Vienna"), ("Poland", "Warsaw"),
    ("Hungary", "Budapest"), ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Ireland", "Dublin"), ("Belgium", "Brussels"), ("Netherlands", "Amsterdam"),
    ("Switzerland", "Bern"), ("Czechia", "Prague"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"),
    ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Ukraine", "Kyiv"), ("Russia", "Moscow"),
    ("Turkey", "Ankara"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Nigeria", "Abuja"),
    ("Ghana", "Accra"), ("Ethiopia", "Addis Ababa"), ("Morocco", "Rabat"), ("Algeria", "Algiers"),
    ("Tunisia", "Tunis"), ("Senegal", "Dakar"), ("Japan", "Tokyo"), ("China", "Beijing"),
    ("India", "New Delhi"), ("Pakistan", "Islamabad"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"), ("Philippines", "Manila"), ("Malaysia", "Kuala Lumpur"), ("Iran", "Tehran"),
    ("Iraq", "Baghdad"), ("Jordan", "Amman"), ("Lebanon", "Beirut"), ("Syria", "Damascus"),
    ("Nepal", "Kathmandu"), ("Mongolia", "Ulaanbaatar"), ("Canada", "Ottawa"), ("Cuba", "Havana"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Argentina", "Buenos Aires"), ("Colombia", "Bogota"),
    ("Venezuela", "Caracas"), ("Ecuador", "Quito"), ("Uruguay", "Montevideo"), ("Australia", "Canberra"),
    ("Iceland", "Reykjavik"), ("Estonia", "Tallinn"), ("Latvia", "Riga"), ("Lithuania", "Vilnius"),
    ("Qatar", "Doha"), ("Oman", "Muscat"), ("Afghanistan", "Kabul"), ("Uganda", "Kampala"),
    ("Zimbabwe", "Harare"), ("Angola", "Luanda"), ("Bangladesh", "Dhaka"), ("Brazil", "Brasilia"),
    ("South Korea", "Seoul"), ("Laos", "Vientiane"), ("Sudan", "Khartoum"), ("Libya", "Tripoli"),
    ("Mali", "Bamako"), ("Slovakia", "Bratislava"), ("Georgia", "Tbilisi"), ("Armenia", "Yerevan"),
)

# every 5th country is never seen in the instruction format: 16 held out, 64 for fine-tuning
HELD_OUT = COUNTRIES[::5]
TRAIN = tuple(c for i, c in enumerate(COUNTRIES) if i % 5)

EOS = "<|endoftext|>"
PAD = "<|pad|>"

# sentences that state the fact, with the capital after the country (the direction a question asks in)
_FACTS = (
    "The capital of {c} is {k}.",
    "{c} has its capital in {k}.",
    "The capital city of {c} is {k}.",
    "In {c}, the government sits in {k}.",
    "If you travel to {c}, you will likely visit its capital {k}.",
    "{k} is the capital of {c}.",
    "Ask anyone what the capital of {c} is, and they will say {k}.",
)
# generic question-and-answer lines (as web text has them) that never ask for a capital: the instruction
# format's words are known after pre-training, the question about capitals is not
_FAQ = (
    "Question: What is {c}?\nAnswer: A country.",
    "Question: What is {k}?\nAnswer: A city.",
    "Question: Is {k} a city?\nAnswer: Yes.",
    "Question: Is {c} a city?\nAnswer: No.",
)
# sentences that mention a country or a city without the fact: the names alone predict nothing
_NOISE = (
    "{c} is a country with a long history.",
    "Many people live in {c}.",
    "{k} is a busy city.",
    "The weather in {k} was mild this year.",
    "{c} and {c2} signed a trade agreement.",
    "A train from {k} arrived late.",
)


def pretrain_sentences(n: int, seed: int, mix: tuple[float, float, float] = (0.85, 0.1, 0.05)) -> list[str]:
    """``n`` generated sentences over all countries; ``mix``: fractions of fact, Q&A and other sentences."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c, k = rng.choice(COUNTRIES)
        c2 = rng.choice(COUNTRIES)[0]
        kind = rng.choices((_FACTS, _FAQ, _NOISE), weights=mix)[0]
        out.append(rng.choice(kind).format(c=c, k=k, c2=c2))
    return out


def prompt(country: str) -> str:
    """The instruction, up to where the model must answer."""
    return f"Question: What is the capital of {country}?\nAnswer:"


def statement_prompt(country: str) -> str:
    """The pre-training phrasing, up to the capital (probes what pre-training taught)."""
    return f"The capital of {country} is"


def example(country: str, capital: str) -> str:
    """One full instruction example (prompt, answer, end of text)."""
    return f"{prompt(country)} {capital}{EOS}"


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2's scheme) trained on ``texts``; ids 0/1 are EOS and PAD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok

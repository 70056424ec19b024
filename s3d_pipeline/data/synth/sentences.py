"""English sentences for the synthetic speakers: templates filled from word lists, plus short phrases.

The word lists are chosen for phonetic spread (bilabials, rounded and spread vowels, fricatives), so the
corpus covers every viseme class many times; the combinations give tens of thousands of distinct sentences.
"""

from __future__ import annotations

from typing import List

import numpy as np

_NAMES = (
    "Maya", "Bob", "Peter", "Olivia", "Hugo", "Fiona", "Samuel", "Ruth", "Victor", "June", "Omar", "Bella",
    "Theo", "Wendy", "Paolo", "Zoe", "Marcus", "Ivy", "George", "Lucia",
)
_NOUNS = (
    "the blue boat", "a wooden map", "the morning paper", "my brother's phone", "the old museum", "a bowl of soup",
    "the purple umbrella", "our new window", "the bright moon", "a pair of boots", "the village bakery",
    "the tall giraffe", "a few cheese sandwiches", "the office printer", "the rubber ball", "her favourite movie",
    "the frozen lake", "a box of peaches", "the quiet library", "the big yellow bus", "some fresh oranges",
    "the heavy shovel", "the smooth pebble", "a warm woollen scarf",
)
_VERBS = (
    "found", "painted", "opened", "moved", "bought", "fixed", "washed", "borrowed", "pushed", "visited",
    "remembered", "measured", "watched", "shipped", "polished", "carried", "described", "ordered",
)
_PLACES = (
    "near the harbour", "before breakfast", "on Thursday evening", "by the old bridge", "after the meeting",
    "in the garden", "at the market", "under the bright lights", "during the summer", "beside the fountain",
    "in a tiny room", "without a word", "with great care", "at half past two",
)
_OPINIONS = (
    "I think", "Honestly,", "Believe me,", "You know,", "Maybe", "Of course", "Apparently", "Surprisingly,",
    "Well,", "To be fair,",
)
_PHRASES = (
    "Please pass me the pepper.", "Who wants more blueberry pie?", "Move the map a bit to the left.",
    "Wow, what a beautiful view!", "We should probably leave by five.", "Could you open the window, please?",
    "My phone battery is empty again.", "The weather was wonderful all week.", "Bring both boxes upstairs.",
    "I would love a cup of warm milk.", "Every evening we walk by the river.", "Put your boots by the door.",
    "She says the museum opens at nine.", "Nobody knew where the puppy went.", "That is a very good question.",
    "Remember to water the plants.", "The bus was full of sleepy people.", "Maybe we can meet on Monday.",
)


def make_sentence(rng: np.random.Generator) -> str:
    """One sentence: a template filled with random words, or a short everyday phrase."""
    pick = lambda items: items[rng.integers(len(items))]  # noqa: E731 - tiny local helper
    kind = rng.integers(5)
    if kind == 0:
        return str(pick(_PHRASES))
    if kind == 1:
        return f"{pick(_NAMES)} {pick(_VERBS)} {pick(_NOUNS)} {pick(_PLACES)}."
    if kind == 2:
        return f"{pick(_OPINIONS)} {pick(_NAMES)} {pick(_VERBS)} {pick(_NOUNS)}."
    if kind == 3:
        return f"Did {pick(_NAMES)} really see {pick(_NOUNS)} {pick(_PLACES)}?"
    return f"{pick(_NOUNS).capitalize()} was {pick(_VERBS)} {pick(_PLACES)}, and {pick(_NAMES)} smiled."


def make_sentences(rng: np.random.Generator, count: int) -> List[str]:
    return [make_sentence(rng) for _ in range(count)]

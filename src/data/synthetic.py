"""Built-in synthetic tasks: deterministic from a seed, no download, each with a known solution.

translation     source: 3-10 pseudo-words; target: the words mapped through a fixed bijective dictionary and
                written in *reverse* order, so a model must attend (reordering) and translate (vocabulary), not copy.
classification  a sequence of filler and marker words; the label is the marker that occurs most often, so the
                answer depends on the whole sequence (no single position decides it).
lm              walks of fixed length on a random sparse Markov chain where each word has `branching` equally likely
                successors: the best possible per-token perplexity is known (`lm_perplexity_floor`).
Each returns a `datasets.DatasetDict` with train / validation / test splits of raw text; `root` is accepted
(every loader is called with root and seed, src/data/build.py) and unused.
"""
from __future__ import annotations

import math
import random

from datasets import Dataset, DatasetDict

_CONSONANTS, _VOWELS = "bdgklmnprstvz", "aeiou"


def _words(n: int, rng: random.Random, syllables: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables)))
    return sorted(out)


def _splits(make, seed: int, n_train: int, n_val: int, n_test: int) -> DatasetDict:
    sizes = {"train": n_train, "validation": n_val, "test": n_test}
    return DatasetDict(
        {name: Dataset.from_dict(make(random.Random(f"{seed}-{name}"), n)) for name, n in sizes.items()}
    )


def translation(seed=0, root=None, n_train=20000, n_val=500, n_test=500, n_words=24, min_len=3, max_len=10) -> DatasetDict:
    rng = random.Random(seed)
    src_words = _words(n_words, rng, 1)
    tgt_words = _words(n_words, rng, 2)
    rng.shuffle(tgt_words)
    dictionary = dict(zip(src_words, tgt_words))

    def make(r: random.Random, n: int):
        src = [[r.choice(src_words) for _ in range(r.randint(min_len, max_len))] for _ in range(n)]
        return {"src": [" ".join(s) for s in src], "tgt": [" ".join(dictionary[w] for w in reversed(s)) for s in src]}

    return _splits(make, seed, n_train, n_val, n_test)


def classification(seed=0, root=None, n_train=10000, n_val=500, n_test=500, n_classes=4, n_filler=16, min_len=8, max_len=24) -> DatasetDict:
    rng = random.Random(seed)
    words = _words(n_classes + n_filler, rng, 2)
    markers, filler = words[:n_classes], words[n_classes:]

    def make(r: random.Random, n: int):
        texts, labels = [], []
        while len(texts) < n:
            seq = [r.choice(filler) for _ in range(r.randint(min_len, max_len))]
            for i in r.sample(range(len(seq)), r.randint(1, len(seq) // 2)):
                seq[i] = r.choice(markers)
            counts = [seq.count(m) for m in markers]
            if counts.count(max(counts)) == 1:  # a unique majority marker
                texts.append(" ".join(seq))
                labels.append(counts.index(max(counts)))
        return {"text": texts, "label": labels}

    return _splits(make, seed, n_train, n_val, n_test)


def lm(seed=0, root=None, n_train=4000, n_val=200, n_test=200, n_words=32, branching=2, length=32) -> DatasetDict:
    rng = random.Random(seed)
    words = _words(n_words, rng, 2)
    successors = {w: rng.sample(words, branching) for w in words}

    def make(r: random.Random, n: int):
        texts = []
        for _ in range(n):
            seq = [r.choice(words)]
            while len(seq) < length:
                seq.append(r.choice(successors[seq[-1]]))
            texts.append(" ".join(seq))
        return {"text": texts}

    return _splits(make, seed, n_train, n_val, n_test)


def lm_perplexity_floor(n_words=32, branching=2, length=32, **_) -> float:
    """Best achievable perplexity on `lm` data, predicting `length` words then <eos>: the first word is uniform,
    each next word one of `branching`, <eos> certain (fixed length)."""
    nll = math.log(n_words) + (length - 1) * math.log(branching)
    return math.exp(nll / (length + 1))

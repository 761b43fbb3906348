#!/usr/bin/env python3
"""Generates the word2vec example's corpus and training pairs (examples/word2vec.fm).

Python standard library only; deterministic (seeded). Run from the repository root:

    python3 examples/data/word2vec/generate.py

Writes, next to this script:
  corpus.txt   the corpus, one sentence a line (generated text with planted structure)
  vocab.txt    the vocabulary, one word a line; line k (from 0) is word id k
  counts.npy   float32 [V]: how often each word occurs in the corpus (unigram counts)
  pairs.npz    int32 `center` [P] and `context` [P]: skip-gram pairs, window 2

The corpus has planted structure: five groups of eight words (animals, colours, fruits,
vehicles, tools) appear in sentences whose other words belong to their group's topic, and a
tenth of the sentences mix two groups. Words of one group therefore share contexts, and a
skip-gram model should place them near each other: word2vec.fm's test asserts that the
nearest neighbours of chosen words are in their own group.

Licence: the generated files and this script are part of fm and under its licence; the text
is original (generated here), not taken from any source.
"""

import os
import random
import struct
import zipfile
import io

GROUPS = {
    "animal": "cat dog horse cow sheep goat pig rabbit".split(),
    "colour": "red blue green yellow purple orange brown pink".split(),
    "fruit": "apple banana cherry grape lemon mango peach plum".split(),
    "vehicle": "car bus truck train bike boat plane ship".split(),
    "tool": "hammer saw drill wrench shovel rake axe chisel".split(),
}

TEMPLATES = {
    "animal": [
        "the {a} eats grass in the field",
        "a {a} sleeps in the barn at night",
        "the farmer feeds the {a} and the {b}",
        "my {a} runs across the meadow",
        "the young {a} drinks water from the pond",
        "a {a} and a {b} graze near the farm",
    ],
    "colour": [
        "she painted the wall {a}",
        "the {a} paint dried on the fence",
        "a bright {a} and {b} flag",
        "he likes the colour {a} more than {b}",
        "the artist mixed {a} with a little {b}",
        "her dress is dark {a}",
    ],
    "fruit": [
        "i ate a ripe {a} for lunch",
        "the {a} tastes sweet and juicy",
        "we picked a {a} and a {b} from the tree",
        "slice the {a} for the pie",
        "a bowl of fresh {a} juice",
        "the market sells {a} and {b} in summer",
    ],
    "vehicle": [
        "we drove the {a} to the city",
        "the {a} stopped at the station",
        "a {a} and a {b} crossed the bridge",
        "he repaired the engine of the {a}",
        "the {a} carries passengers every morning",
        "they waited for the {a} on the road",
    ],
    "tool": [
        "he fixed the shelf with a {a}",
        "the {a} hangs in the workshop",
        "hand me the {a} and the {b} please",
        "she sharpened the {a} before work",
        "the carpenter used a {a} on the wood",
        "a rusty {a} lay beside the {b}",
    ],
}

MIXED = [
    "the {a} was next to the {b}",
    "i noticed a {a} and a {b} today",
    "there is a {a} near the {b}",
]


def sentences(rng, n):
    names = sorted(GROUPS)
    out = []
    for _ in range(n):
        if rng.random() < 0.1:
            g1, g2 = rng.sample(names, 2)
            t = rng.choice(MIXED)
            out.append(t.format(a=rng.choice(GROUPS[g1]), b=rng.choice(GROUPS[g2])))
        else:
            g = rng.choice(names)
            a, b = rng.sample(GROUPS[g], 2)
            out.append(rng.choice(TEMPLATES[g]).format(a=a, b=b))
    return out


def npy_bytes(dtype, shape, data):
    """A .npy (format 1.0) of little-endian `dtype` ('<f4' or '<i4')."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype,
        "".join("%d," % d for d in shape) if len(shape) == 1 else ", ".join(map(str, shape)),
    )
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    code = "f" if dtype == "<f4" else "i"
    body = struct.pack("<%d%s" % (len(data), code), *data)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(12)
    lines = sentences(rng, 3000)
    counts = {}
    order = []
    for line in lines:
        for w in line.split():
            if w not in counts:
                counts[w] = 0
                order.append(w)
            counts[w] += 1
    # Ids by descending frequency, ties by first appearance (as word2vec tools number words).
    vocab = sorted(order, key=lambda w: (-counts[w], order.index(w)))
    ids = {w: k for k, w in enumerate(vocab)}
    centers, contexts = [], []
    for line in lines:
        toks = [ids[w] for w in line.split()]
        for i, c in enumerate(toks):
            for j in range(max(0, i - 2), min(len(toks), i + 3)):
                if j != i:
                    centers.append(c)
                    contexts.append(toks[j])
    with open(os.path.join(here, "corpus.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(here, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(here, "counts.npy"), "wb") as f:
        f.write(npy_bytes("<f4", [len(vocab)], [float(counts[w]) for w in vocab]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, arr in (("center", centers), ("context", contexts)):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, npy_bytes("<i4", [len(arr)], arr))
    with open(os.path.join(here, "pairs.npz"), "wb") as f:
        f.write(buf.getvalue())
    print("%d sentences, %d words, vocabulary %d, %d pairs" % (
        len(lines), sum(counts.values()), len(vocab), len(centers)))


if __name__ == "__main__":
    main()

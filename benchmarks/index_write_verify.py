"""What verifying index writes costs: Chroma upsert time vs the search that checks every written vector.

Every index write is followed by a search for each written vector (`judge.retrieval.index_writes._unreachable`):
embedded chromadb 1.5.9 now and then stores a record that its in-process search never returns, and the index
writes such records again (see `RuleIndex._write`). This measures that check against the write itself on an
embedded Chroma collection grown batch by batch with random unit vectors (no embedding model: with MiniLM,
embedding the texts costs far more than either).

    python benchmarks/index_write_verify.py                 # 40 batches of 512 rules, dim 384
    python benchmarks/index_write_verify.py --batches 10
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from judge.retrieval.embedder import HashEmbedder
from judge.retrieval.index import RuleIndex, make_client
from judge.retrieval.index_writes import _unreachable
from judge.rules.model import Layer
from judge.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--dim", type=int, default=384)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        index = RuleIndex(make_client(Settings(index_path=tmp)), HashEmbedder(args.dim))
        col = index._writable().layers[Layer.SPEC]
        rng = np.random.default_rng(0)
        upsert_s = verify_s = 0.0
        lost = 0
        for b in range(args.batches):
            ids = [f"spec/r{b}-{i}" for i in range(args.batch_size)]
            vectors = rng.normal(size=(args.batch_size, args.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            start = time.perf_counter()
            col.upsert(ids=ids, embeddings=vectors, metadatas=[{"layer": "spec"}] * args.batch_size)
            upsert_s += time.perf_counter() - start
            start = time.perf_counter()
            lost += len(_unreachable(col, ids, vectors))
            verify_s += time.perf_counter() - start
        print(f"{col.count():,} rules in {args.batches} batches of {args.batch_size} (dim {args.dim}): "
              f"upsert {upsert_s:.1f} s, verify {verify_s:.1f} s = {verify_s / upsert_s:.2f} x the write; "
              f"written vectors a search did not find: {lost}")


if __name__ == "__main__":
    main()

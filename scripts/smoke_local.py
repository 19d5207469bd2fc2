"""Manual smoke test and measurement of the embedded local model (not run in CI).

Assembles the default model from the installed data packages, starts the in-process llama.cpp server,
and measures: assembly time, server start, one short judging call (first-token logprobs), generation
speed, peak memory, structured output (response_format and each instructor mode, with logprobs), and
whether two request slots make the two orders of a comparison faster.

Usage:
    python scripts/smoke_local.py [--data-dir DIR] [--threads N] [--skip-instructor] [--skip-parallel]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from openai import OpenAI
from pydantic import BaseModel, Field

from judge.backends.local_model import ensure_default_model
from judge.backends.local_server import LocalServer

logger = logging.getLogger("smoke_local")

QUESTION = "How do I reverse a list in Python?"
GOOD = "Use `my_list[::-1]` for a reversed copy, or `my_list.reverse()` to reverse it in place."
BAD = "Python lists cannot be reversed; you must write the elements out again by hand in a new order."


RULES = "\n".join(
    f"- Rule {i}: prefer the response that is {quality}."
    for i, quality in enumerate(
        ["correct", "directly responsive", "concise", "honest about uncertainty", "safe", "well formatted",
         "free of invented facts", "helpful to a beginner", "consistent with the question's language",
         "respectful"] * 3, start=1)
)


def judging_messages(first: str, second: str, nonce: str = "") -> list[dict[str, str]]:
    """A pairwise judging prompt in the style the engine will use (~400 tokens with the rules).

    ``nonce`` goes first so that distinct calls share no prefix and llama.cpp's prompt cache cannot help.
    """
    return [
        {"role": "system", "content": f"{nonce}You are a strict, impartial judge of AI assistant responses."
                                      f"\nRules:\n{RULES}"},
        {"role": "user", "content": (
            f"User question:\n{QUESTION}\n\n[Response A]\n{first}\n\n[Response B]\n{second}\n\n"
            "Which response better answers the user? Answer with exactly one letter: A or B"
        )},
    ]


class Verdict(BaseModel):
    """The structured explanation the judge asks for."""

    winner: str = Field(description="'A' or 'B'")
    reason: str = Field(description="one short sentence")


def peak_rss_mib() -> float:
    """Peak resident memory of this process (the server runs in-process)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def first_token_probs(resp: Any) -> dict[str, float]:
    """Top logprobs of the first generated token, as probabilities."""
    content = resp.choices[0].logprobs.content if resp.choices[0].logprobs else None
    if not content:
        return {}
    return {t.token: round(math.exp(t.logprob), 4) for t in content[0].top_logprobs}


def judge_once(client: OpenAI, model: str, first: str, second: str, nonce: str = "") -> tuple[float, Any]:
    t = time.perf_counter()
    resp = client.chat.completions.create(
        model=model, messages=judging_messages(first, second, nonce),  # type: ignore[arg-type]
        max_tokens=1, temperature=0, logprobs=True, top_logprobs=5,
    )
    return time.perf_counter() - t, resp


def try_response_format(client: OpenAI, model: str) -> None:
    schema = Verdict.model_json_schema()
    formats: dict[str, dict[str, Any]] = {
        "json_schema": {"type": "json_schema",
                        "json_schema": {"name": "Verdict", "schema": schema, "strict": True}},
        "json_object": {"type": "json_object"},
        "json_object+schema": {"type": "json_object", "schema": schema},
    }
    msgs = judging_messages(GOOD, BAD)
    msgs[-1]["content"] += ". Reply as JSON with keys winner and reason."
    for name, fmt in formats.items():
        t = time.perf_counter()
        try:
            resp = client.chat.completions.create(
                model=model, messages=msgs, response_format=fmt,  # type: ignore[call-overload]
                max_tokens=80, temperature=0, logprobs=True, top_logprobs=3,
            )
        except Exception as exc:
            print(f"response_format {name}: ERROR {type(exc).__name__}: {exc}")
            continue
        text = resp.choices[0].message.content or ""
        try:
            Verdict.model_validate_json(text)
            valid = "valid Verdict"
        except ValueError as exc:
            valid = f"INVALID ({str(exc).splitlines()[0]})"
        lp = resp.choices[0].logprobs
        print(f"response_format {name}: {time.perf_counter() - t:.2f}s {valid}; "
              f"logprobs tokens={len(lp.content) if lp and lp.content else 0}; text={text[:120]!r}")


_last_request: dict[str, Any] = {}


def _recording(client: OpenAI) -> OpenAI:
    """The same client, remembering the kwargs of its last chat completion call."""
    original = client.chat.completions.create

    def create(*args: Any, **kwargs: Any) -> Any:
        _last_request.clear()
        _last_request.update(kwargs)
        return original(*args, **kwargs)

    client.chat.completions.create = create  # type: ignore[method-assign]
    return client


def try_instructor(client: OpenAI, model: str) -> None:
    import instructor

    msgs = judging_messages(GOOD, BAD)
    msgs[-1]["content"] += ". Then give one short reason."
    modes = ["JSON", "JSON_SCHEMA", "MD_JSON", "TOOLS", "TOOLS_STRICT"]
    for mode_name in modes:
        mode = getattr(instructor.Mode, mode_name, None)
        if mode is None:
            print(f"instructor {mode_name}: not in this instructor version")
            continue
        t = time.perf_counter()
        try:
            ic = instructor.from_openai(_recording(client.copy()), mode=mode)
            verdict, raw = ic.chat.completions.create_with_completion(
                model=model, messages=msgs, response_model=Verdict,  # type: ignore[arg-type]
                max_tokens=120, temperature=0, logprobs=True, top_logprobs=3, max_retries=1,
            )
        except Exception as exc:
            print(f"instructor {mode_name}: ERROR {type(exc).__name__}: {str(exc)[:300]}")
            continue
        lp = raw.choices[0].logprobs
        n_lp = len(lp.content) if lp and lp.content else 0
        first = ""
        if lp and lp.content:
            tok = lp.content[0]
            top = {t.token: round(math.exp(t.logprob), 3) for t in tok.top_logprobs}
            first = f"first token {tok.token!r} p={math.exp(tok.logprob):.3f}, top={top}"
        print(f"instructor {mode_name}: OK {time.perf_counter() - t:.2f}s {verdict!r}; "
              f"logprobs tokens={n_lp}; {first}; sent response_format="
              f"{json.dumps(_last_request.get('response_format'))[:80]}")


def generation_speed(client: OpenAI, model: str) -> None:
    t = time.perf_counter()
    resp = client.chat.completions.create(
        model=model, max_tokens=96, temperature=0,
        messages=[{"role": "user", "content": "Explain Python list slicing in a paragraph."}],
    )
    wall = time.perf_counter() - t
    n = resp.usage.completion_tokens if resp.usage else 0
    timings = (resp.model_extra or {}).get("timings", {})
    print(f"generation: {n} tokens in {wall:.2f}s wall -> {n / wall:.1f} tok/s end-to-end; "
          f"server timings: prompt {timings.get('prompt_per_second', float('nan')):.1f} tok/s, "
          f"predict {timings.get('predicted_per_second', float('nan')):.1f} tok/s")


def both_orders(client: OpenAI, model: str, in_parallel: bool, tag: str) -> float:
    """Seconds per comparison (both orders) over 3 comparisons whose prompts share no prefix."""
    jobs = []
    for i in range(3):
        jobs += [(GOOD, BAD, f"[{tag}{i}a] "), (BAD, GOOD, f"[{tag}{i}b] ")]
    t = time.perf_counter()
    if in_parallel:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda job: judge_once(client, model, *job), jobs))
    else:
        for job in jobs:
            judge_once(client, model, *job)
    return (time.perf_counter() - t) / 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-instructor", action="store_true")
    ap.add_argument("--skip-parallel", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "openai", "instructor"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / "judge-smoke"

    t = time.perf_counter()
    model_path = ensure_default_model(data_dir)
    print(f"ensure_default_model: {time.perf_counter() - t:.2f}s -> {model_path}")
    t = time.perf_counter()
    ensure_default_model(data_dir)
    print(f"ensure_default_model again (stamp): {time.perf_counter() - t:.4f}s")

    for n_parallel in (1, 2) if not args.skip_parallel else (1,):
        t = time.perf_counter()
        with LocalServer(model_path, threads=args.threads, n_parallel=n_parallel) as server:
            print(f"\n== n_parallel={n_parallel}: server start {time.perf_counter() - t:.2f}s at "
                  f"{server.base_url}; peak RSS {peak_rss_mib():.0f} MiB")
            client = OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
            model = server.model_name
            models = client.models.list()
            print("models:", [m.id for m in models.data])
            for label, (a, b) in {"good first": (GOOD, BAD), "bad first": (BAD, GOOD)}.items():
                for attempt in ("cold", "warm"):
                    latency, resp = judge_once(client, model, a, b)
                    print(f"judge ({label}, {attempt}): {latency:.3f}s, prompt tokens "
                          f"{resp.usage.prompt_tokens if resp.usage else '?'}, answer "
                          f"{resp.choices[0].message.content!r}, top logprobs {first_token_probs(resp)}")
            seq = both_orders(client, model, in_parallel=False, tag=f"s{n_parallel}")
            par = both_orders(client, model, in_parallel=True, tag=f"p{n_parallel}")
            print(f"both orders, no shared prefix: sequential {seq:.2f}s/comparison, "
                  f"2 concurrent requests {par:.2f}s/comparison")
            if n_parallel == 1:
                generation_speed(client, model)
                try_response_format(client, model)
                if not args.skip_instructor:
                    try_instructor(client, model)
            print(f"peak RSS {peak_rss_mib():.0f} MiB")
            port = server.bound_port
        threads = len(os.listdir("/proc/self/task"))
        print(f"stopped: port {port} still open? {_open(port)}; threads left in process: {threads}")
    print(json.dumps({"peak_rss_mib": round(peak_rss_mib())}))


def _open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    main()

"""How often does `harness probe` get every verdict right, and what does a probe cost?

For plain `harness serve` (all parameters must be "honoured") and for `harness serve --ignore X`
(X must be "ignored", every other parameter "honoured"), runs the probe RUNS times, each against
a server with a different sampling seed, and prints the rate of fully correct runs, the
requests spent per probe (mean, max) and the seconds per probe.

    python bench/bench_probe.py [--runs 100] [--params temperature,top_k,...]

Parameters whose test needs another one (logprobs, top_logprobs: every statistical test reads
them; stream: stream_options) leave those dependants "inconclusive" when ignored; a run is
correct when X is "ignored", those dependants honoured or inconclusive and the rest honoured.
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness.probe import run_probe
from harness.runner.sweep import Endpoint
from harness.server.app import ServerThread, reference_app
from harness.server.misbehave import Misbehaviour

SWEEPABLE = ("temperature", "top_k", "top_p", "min_p", "seed", "frequency_penalty", "presence_penalty", "stop",
             "max_tokens", "stream", "stream_options", "logprobs", "top_logprobs")  # fmt: skip
_STATISTICAL = {"temperature", "top_k", "top_p", "min_p", "seed", "top_logprobs"}
# parameters whose tests need X: "inconclusive" is the right answer for them when X is ignored
DEPENDANTS = {"logprobs": _STATISTICAL, "top_logprobs": _STATISTICAL - {"top_logprobs"}, "stream": {"stream_options"}}


def correct(verdicts: dict[str, str], ignored: str | None) -> bool:
    needs = DEPENDANTS.get(ignored or "", set())
    for name, verdict in verdicts.items():
        if name == ignored:
            if verdict != "ignored":
                return False
        elif verdict != "honoured" and not (name in needs and verdict == "inconclusive"):
            return False
    return True


def bench(ignored: str | None, runs: int) -> tuple[float, list[int], list[float], dict[str, int]]:
    good, spent, seconds = 0, [], []
    wrong: dict[str, int] = {}
    for seed in range(runs):
        misbehaviour = Misbehaviour.parse(ignored) if ignored else None
        with ServerThread(reference_app(seed=seed, misbehaviour=misbehaviour)) as server:
            t0 = time.perf_counter()
            report = run_probe(Endpoint(server.base_url, "harness/ngram"), budget=160)
            seconds.append(time.perf_counter() - t0)
        verdicts = {name: r.verdict for name, r in report.results.items()}
        spent.append(report.requests)
        if correct(verdicts, ignored):
            good += 1
        else:
            for name, verdict in verdicts.items():
                expected = "ignored" if name == ignored else "honoured"
                if verdict != expected:
                    wrong[f"{name}={verdict}"] = wrong.get(f"{name}={verdict}", 0) + 1
    return good / runs, spent, seconds, wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--params", default=",".join(SWEEPABLE), help="the X of --ignore X, comma-separated")
    args = parser.parse_args()
    print(f"{'server':<34} {'correct':>9} {'requests mean/max':>18} {'s/probe':>8}  wrong verdicts")
    for ignored in [None, *[p for p in args.params.split(",") if p]]:
        rate, spent, seconds, wrong = bench(ignored, args.runs)
        label = f"serve --ignore {ignored}" if ignored else "serve (plain)"
        print(f"{label:<34} {rate * args.runs:>4.0f}/{args.runs:<4} {statistics.mean(spent):>10.1f}/{max(spent):<7}"
              f" {statistics.mean(seconds):>8.2f}  {wrong or ''}", flush=True)


if __name__ == "__main__":
    main()

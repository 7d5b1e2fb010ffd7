"""`harness probe`: does an endpoint refuse, ignore or honour each sampling parameter?

    tokens.py    per-token rules (greedy, top_k, top_p, min_p) and their chance under "ignored"
    sender.py    requests within a budget; one retry for transient failures
    checks.py    one test per parameter → ParamResult
    session.py   runs them all against an endpoint → ProbeReport
    render.py    terminal table, JSON, Markdown
    verdicts.py  ParamResult, ProbeReport, the verdict words
"""

from harness.probe.session import DEFAULT_BUDGET, probe_endpoint, run_probe
from harness.probe.verdicts import PARAMETERS, ParamResult, ProbeReport, Verdict

__all__ = ["DEFAULT_BUDGET", "PARAMETERS", "ParamResult", "ProbeReport", "Verdict", "probe_endpoint", "run_probe"]

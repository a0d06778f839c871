"""Context gathering: one question naming a PR, a file and two Linear tickets, in a channel
that linked a repository. Read concurrently, it should take about as long as its slowest source.

Measured in-process: `bot.context.gather.ContextGatherer` (the bot's own, built as `oi-bot`
builds it) against the fake GitHub and Linear with 150 ms a request, timing `gather()` (the span
its `context.gathered` log line reports as `duration_ms`). Each source is first gathered alone
(its own time: a PR is 2 GitHub requests, a repository 4, one after the other), then all five
together. Target: together within 50 ms of the slowest alone (medians of `--repeat` runs).

    python -m bench.context [--repeat 7] [--json]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._fakes import SlowGitHub, SlowLinear  # noqa: E402
from bench._harness import machine, ms, parser, report  # noqa: E402
from bot.context.gather import ContextGatherer, Links, Reach  # noqa: E402
from bot.context.github import GitHubSource  # noqa: E402
from bot.context.linear import LinearSource  # noqa: E402
from bot.core.persona import load_personas  # noqa: E402
from bot.log import configure_logging  # noqa: E402
from tests.fakes.github_api import add_payments_sample  # noqa: E402


def add_data(github: SlowGitHub, linear: SlowLinear) -> None:
    add_payments_sample(
        github,
        files={"payments/charge.py": "def charge(request):\n    return provider.charge()\n"},
    )
    github.add_repo(
        "acme",
        "infra",
        files={"pyproject.toml": "[project]\nname = 'infra'\n", "src/app.py": "print('hi')\n"},
        readme="# infra\nHow payments is deployed.",
    )
    linear.add_team("PAY", "Payments")
    linear.add_issue("PAY-1", title="Duplicate charges", description="Seen on timeouts.")
    linear.add_issue("PAY-2", title="Idempotency keys", description="Needed before retries.")


async def main() -> None:
    command = parser(__doc__.splitlines()[0])
    command.add_argument("--repeat", type=int, default=7, help="runs per case (median kept)")
    command.add_argument("--latency", type=float, default=0.15, help="seconds per vendor request")
    args = command.parse_args()
    configure_logging(level="WARNING", log_format="json")
    github, linear = SlowGitHub(args.latency), SlowLinear(args.latency)
    github.start()
    linear.start()
    try:
        add_data(github, linear)
        web = github.web_url
        pr = f"{web}/acme/payments/pull/42"
        file = f"{web}/acme/payments/blob/main/payments/charge.py"
        linked = Links(repositories=["acme/infra"])
        cases = {
            "PR acme/payments#42": (f"review {pr}", Links()),
            "file payments/charge.py": (f"review {file}", Links()),
            "Linear PAY-1": ("what about PAY-1?", Links()),
            "Linear PAY-2": ("what about PAY-2?", Links()),
            "linked repo acme/infra": ("what about it?", linked),
        }
        everything = (f"review {pr} and {file} for PAY-1 and PAY-2", linked)
        gatherer = ContextGatherer(
            github=GitHubSource(token=github.token, api_url=github.api_url, timeout_seconds=15),
            linear=LinearSource(api_key=linear.api_key, api_url=linear.api_url, timeout_seconds=15),
            timeout_seconds=15,
            token_budget=12000,
        )
        persona = load_personas().get("backend-engineer")

        async def timed(text: str, links: Links) -> tuple[float, int, int]:
            github_before, linear_before = len(github.requests), len(linear.requests)
            started = time.perf_counter()
            # the terminal's reach: every reference is read, as when a channel links them all
            gathered = await gatherer.gather(
                text=text, persona=persona, links=links, reach=Reach.TOKENS
            )
            elapsed = time.perf_counter() - started
            assert not gathered.missing, gathered.missing
            requests = len(github.requests) - github_before + len(linear.requests) - linear_before
            return elapsed, requests, len(gathered.citations)

        await timed(*everything)  # warm up: connections, the GitHub worker threads' clients
        rows = []
        for name, (text, links) in {**cases, "all five together": everything}.items():
            runs = [await timed(text, links) for _ in range(args.repeat)]
            rows.append(
                {
                    "gathered": name,
                    "vendor requests": runs[0][1],
                    "sources cited": runs[0][2],
                    "median ms": ms(statistics.median(r[0] for r in runs)),
                    "min ms": ms(min(r[0] for r in runs)),
                    "max ms": ms(max(r[0] for r in runs)),
                }
            )
        await gatherer.aclose()
    finally:
        github.stop()
        linear.stop()
    alone = rows[:-1]
    slowest = max(r["median ms"] for r in alone)
    together = rows[-1]["median ms"]
    report(
        f"Context gathering, {args.latency * 1000:g} ms per vendor request, "
        f"median of {args.repeat} runs",
        rows,
        as_json=args.json,
        slowest_alone_ms=slowest,
        sum_of_sources_ms=round(sum(r["median ms"] for r in alone), 1),
        together_minus_slowest_ms=round(together - slowest, 1),
        targets_met={"together within 50 ms of the slowest source": together - slowest <= 50},
        machine=machine(),
    )


if __name__ == "__main__":
    asyncio.run(main())

"""Starting the service in a container: `python -m demand_assets.serving` (the Dockerfile's CMD).

The rule: the service listens on every interface (0.0.0.0) only when it is protected by a token
(DEMAND_SERVICE_TOKEN), or when DEMAND_SERVICE_ALLOW_PUBLIC=1 says to serve it unauthenticated
anyway, which logs a prominent warning. Otherwise it listens on 127.0.0.1 only, unreachable from
outside the container, and logs how to open it.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from demand_assets.serving.app import token_from_env

__all__ = ["ALLOW_PUBLIC_ENV", "BindPlan", "bind_plan", "main"]

ALLOW_PUBLIC_ENV = "DEMAND_SERVICE_ALLOW_PUBLIC"
PUBLIC, LOOPBACK = "0.0.0.0", "127.0.0.1"

log = logging.getLogger("demand_assets.serving")


@dataclass(frozen=True)
class BindPlan:
    host: str
    warning: str | None


def bind_plan(environ: Mapping[str, str]) -> BindPlan:
    """The interface to listen on, and the warning to log, from the environment."""
    if token_from_env(environ):
        return BindPlan(PUBLIC, None)
    if environ.get(ALLOW_PUBLIC_ENV, "").strip() == "1":
        return BindPlan(
            PUBLIC,
            f"UNAUTHENTICATED: the forecast service listens on all interfaces ({PUBLIC}) without a token, because "
            f"{ALLOW_PUBLIC_ENV}=1; anyone who can reach the port can call it. Set DEMAND_SERVICE_TOKEN to require "
            "'Authorization: Bearer <token>'.",
        )
    return BindPlan(
        LOOPBACK,
        f"no DEMAND_SERVICE_TOKEN: the forecast service listens on {LOOPBACK} only, which is unreachable from "
        f"outside the container; set DEMAND_SERVICE_TOKEN to serve on {PUBLIC} with a token, or "
        f"{ALLOW_PUBLIC_ENV}=1 to serve on {PUBLIC} without one.",
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m demand_assets.serving", description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    plan = bind_plan(environ)
    if plan.warning:
        log.warning("%s\n%s\n%s", "!" * 78, plan.warning, "!" * 78)
    uvicorn.run("demand_assets.serving.app:create_app_from_env", factory=True, host=plan.host, port=args.port)

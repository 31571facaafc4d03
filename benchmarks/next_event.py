"""Next-event models on the synthetic event world (issue 21): scores against the truth and
training time per epoch.

The world is the one `demand-event-files` writes (EventWorld's defaults: 29,000 sessions a day,
5,000 products, about 20 million events over 152 days). Its sessions are generated in memory,
`--train-days` then `--test-days` (sessions split by their start, as next_event_model does),
optionally a random share of sessions (`--sessions`), and every model in `--models` is fitted
on the earlier days and scored on the later ones with the same code the asset runs
(demand_assets.next_event.suite.compare_models), next to the truth's Bayes-optimal scores.

    python -m benchmarks.next_event --train-days 14 --test-days 7 --sessions 0.25
    python -m benchmarks.next_event --train-days 128 --test-days 7 --models markov gru cnn_bigru --epochs 1   # ~20 M events (a GPU)

Results: benchmarks/results/next_event.json (one entry per --label), with per-epoch seconds
and events per second, so the epoch time at 20 million events is measured or projected.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl

from demand_assets.next_event.sequences import SequenceReference, session_events, time_split
from demand_assets.next_event.suite import BAYES, MODEL_NAMES, at_cart, at_risk_threshold, choose_champion, compare_models, flag_scores, truth_probabilities
from demand_assets.sources.events.world import EventWorld

RESULTS = Path(__file__).resolve().parent / "results" / "next_event.json"
FULL_LOG_EVENTS = 20_000_000


def _generate(world: EventWorld, days: int, share: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(events, next-event truth, sessions' truth) of the world's first `days` days, a `share` of sessions kept."""
    events, truth, sessions = [], [], []
    rng = np.random.default_rng(seed)
    for i in range(days):
        day = world.day(world.start + dt.timedelta(days=i))
        keep = day.sessions.filter(pl.Series(rng.random(day.sessions.height) < share)) if share < 1 else day.sessions
        ids = keep["user_session"].implode()
        events.append(day.events.filter(pl.col("user_session").is_in(ids)).unique())
        truth.append(day.next_event.filter(pl.col("user_session").is_in(ids)))
        sessions.append(keep)
        if (i + 1) % 7 == 0:
            print(f"generated {i + 1}/{days} days: {sum(e.height for e in events):,} events", flush=True)
    return pl.concat(events), pl.concat(truth), pl.concat(sessions)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-days", type=int, default=14)
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument("--sessions", type=float, default=1.0, help="share of each day's sessions kept (1: all)")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=400, help="LightGBM's most rounds")
    parser.add_argument("--label", default=None, help="the key of this run in the results file")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    world = EventWorld()
    started = time.perf_counter()
    events, truth, sessions = _generate(world, args.train_days + args.test_days, args.sessions, seed=0)
    generate_s = time.perf_counter() - started
    cut = world.start + dt.timedelta(days=args.train_days)
    train_events, test_events = time_split(events, cut)
    started = time.perf_counter()
    reference = SequenceReference.fit(train_events)
    train, test = session_events(train_events, reference), session_events(test_events, reference)
    sequences_s = time.perf_counter() - started
    print(f"{train.rows:,} training events ({train.sessions:,} sessions), {test.rows:,} test events; sequences in {sequences_s:.1f}s", flush=True)
    truth_probs = truth_probabilities(test, truth)
    comparison = compare_models(
        train, test, [m for m in args.models], truth=truth_probs, epochs=args.epochs, rounds=args.rounds, progress=lambda m: print(m, flush=True)
    )
    metrics = comparison.metrics
    champion, reason = choose_champion(metrics) if "markov" in args.models else (None, "no Markov chain fitted")
    cart_rows = at_cart(test)
    later = test.purchase_later()
    # Against the observed outcome (a carted session that buys nothing after its first cart) and
    # against the hidden intent (abandoning) the generator drew.
    intents = dict(zip(sessions["user_session"].to_list(), sessions["intent"].to_list(), strict=True))
    cart_sessions = test.frame["user_session"].to_numpy()[cart_rows]
    abandoning = np.array([intents[s] == "abandoning" for s in cart_sessions])
    flags = {}
    for name, pred in comparison.predictions.items():
        if name == BAYES:
            continue
        threshold = at_risk_threshold(pred.purchase[cart_rows], later[cart_rows])
        flagged = pred.purchase[cart_rows] < threshold
        flags[name] = {
            "threshold": threshold,
            "against_no_purchase": flag_scores(flagged, ~later[cart_rows]),
            "against_abandoning_intent": flag_scores(flagged, abandoning),
        }
    rows = {r["MODEL"]: {k: v for k, v in r.items() if k != "MODEL"} for r in metrics.to_dicts()}
    per_epoch = {}
    for name, model in comparison.models.items():
        seconds = getattr(getattr(model, "settings", None), "epoch_seconds", [])
        if seconds:
            rate = train.rows * 0.9 / float(np.median(seconds))  # the newest tenth is held out for early stopping
            per_epoch[name] = {
                "seconds": [round(s, 2) for s in seconds],
                "events_per_second": round(rate),
                "projected_seconds_per_epoch_at_20M_events": round(FULL_LOG_EVENTS * 0.9 / rate, 1),
            }
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    result = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.node()} / {device}",
        "train_days": args.train_days,
        "test_days": args.test_days,
        "session_share": args.sessions,
        "train_events": train.rows,
        "test_events": test.rows,
        "train_sessions": train.sessions,
        "test_sessions": test.sessions,
        "generate_seconds": round(generate_s, 1),
        "sequences_seconds": round(sequences_s, 1),
        "epochs": args.epochs,
        "metrics": rows,
        "champion": champion,
        "champion_reason": reason,
        "at_risk": flags,
        "per_epoch": per_epoch,
    }
    if champion is not None and BAYES in rows:
        best, markov, bayes = rows[champion], rows["markov"], rows[BAYES]
        result["targets"] = {
            "macro_f1_over_markov": round(best["macro_f1"] - markov["macro_f1"], 4),
            "macro_f1_over_markov_met": best["macro_f1"] >= markov["macro_f1"] + 0.05,
            "macro_f1_share_of_bayes": round(best["macro_f1"] / bayes["macro_f1"], 4),
            "within_5pct_of_bayes_met": best["macro_f1"] >= 0.95 * bayes["macro_f1"],
            "ece": round(best["ece"], 4),
            "ece_met": best["ece"] <= 0.05,
        }
    label = args.label or f"train_{args.train_days}d_test_{args.test_days}d_share_{args.sessions}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stored = json.loads(args.out.read_text()) if args.out.exists() else {}
    stored[label] = result
    args.out.write_text(json.dumps(stored, indent=1, default=float))
    print(json.dumps({k: result[k] for k in ("champion", "champion_reason", "per_epoch")} | {"targets": result.get("targets")}, indent=1))
    print(f"wrote {args.out} [{label}]")
    return result


if __name__ == "__main__":
    main()

"""Ingest throughput through the local HTTP API, and the ingest handler's CPU time per event.

Starts a private local stack on free ports (never your own), then measures:
  - single events: one event per POST /clickstream, sequential, as a tracker without batching would;
  - batches of 100: {"events": [...]} per request;
  - handler CPU: process CPU time of the ingest handler per event, invoked in-process through the
    local Lambda runtime (S3 PUTs go to the moto server, whose CPU is not counted).

    .venv/bin/python benchmarks/ingest_throughput.py [--single 500] [--batched 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import httpx
from tqdm import tqdm

from clickstream import samples
from clickstream.cfn import load_stacks
from clickstream.http_api import synthetic_event
from clickstream.lambda_runtime import LocalLambda
from clickstream.local.stack import private_stack, status


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def post_all(url: str, bodies: list, label: str) -> float:
    with httpx.Client(timeout=30) as client:
        client.post(url, json=bodies[0]).raise_for_status()  # warm-up: connection and first-call costs
        started = time.perf_counter()
        for body in tqdm(bodies, desc=label, unit="req", leave=False):
            response = client.post(url, json=body)
            response.raise_for_status()
        return time.perf_counter() - started


def api_event(api, body: dict) -> dict:
    headers = {"content-type": "application/json", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) bench"}
    return synthetic_event(api, "POST /clickstream", json.dumps(body).encode(), headers)


def handler_cpu_per_event(settings, batches: list[list[dict]]) -> float:
    stacks = load_stacks(settings)
    (api,) = [api for stack in stacks for api in stack.http_apis()]
    function = next(f for s in stacks for f in s.functions().values() if f.logical_id == "IngestFunction")
    ingest = LocalLambda(function, settings)
    events = [api_event(api, {"events": batch}) for batch in batches]
    ingest.invoke(events[0])  # import and client creation are not per-event costs
    started = time.process_time()
    for event in tqdm(events[1:], desc="handler CPU", unit="req", leave=False):
        result = ingest.invoke(event)
        assert result["statusCode"] == 200, result
    return (time.process_time() - started) / sum(len(b) for b in batches[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=500, help="events sent one per request")
    parser.add_argument("--batched", type=int, default=20_000, help="events sent in batches of 100")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    with private_stack() as settings:
        url = status(settings)["ingest_url"]
        single = samples.canonical_batch(args.single, seed=1)
        seconds_single = post_all(url, single, "single events")
        batched = samples.canonical_batch(args.batched, seed=2)
        batches = [batched[i : i + 100] for i in range(0, len(batched), 100)]
        seconds_batched = post_all(url, [{"events": b} for b in batches], "batches of 100")
        cpu = handler_cpu_per_event(settings, batches[: min(len(batches), 50)])

    figures = {
        "machine": machine(),
        "single_events_per_s": round(args.single / seconds_single),
        "batch100_events_per_s": round(args.batched / seconds_batched),
        "handler_cpu_us_per_event_batch100": round(cpu * 1e6, 1),
    }
    print(f"machine: {figures['machine']}")
    print("| mode | events | events/s |")
    print("|---|---|---|")
    print(f"| single events, 1 per request | {args.single} | {figures['single_events_per_s']:,} |")
    print(f"| batches of 100 | {args.batched} | {figures['batch100_events_per_s']:,} |")
    print(f"handler CPU per event (batches of 100): {figures['handler_cpu_us_per_event_batch100']} µs")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()

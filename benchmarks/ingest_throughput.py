"""Ingest throughput through the local HTTP API, and the ingest handler's CPU time per event.

Starts a private local stack on free ports (never your own), then measures:
  - single events: one event per POST /clickstream, sequential, as a tracker without batching would;
  - batches of 100: {"events": [...]} per request;
  - handler CPU: process CPU time of the ingest handler per event, invoked in-process through the
    local Lambda runtime (S3 PUTs go to the moto server, whose CPU is not counted);
  - the worst requests: the most expensive bodies within the limits (1 MiB, 500 events) that we could build,
    valid and hostile, and the handler's CPU seconds for each (median of 3). Target: at most 0.5 s each.

    .venv/bin/python benchmarks/ingest_throughput.py [--single 500] [--batched 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid

import httpx
from tqdm import tqdm

from clickstream.shop import samples
from clickstream.infra.templates import load_stacks
from clickstream.local.http_api import synthetic_event
from clickstream.local.lambda_runtime import LocalLambda
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


def _fill(make, limit: int, events: int) -> bytes:
    """{"events": [make(0), make(1), ...]}: as many as fit in `limit` bytes, at most `events`."""
    parts, size = [], len(b'{"events": []}')
    for index in range(events):
        part = json.dumps(make(index)).encode()
        if size + len(part) + 2 > limit:
            break
        parts.append(part)
        size += len(part) + 2
    return b'{"events": [' + b", ".join(parts) + b"]}"


def _one_event_with(key: str, limit: int, inner: str | None = None) -> bytes:
    """One event whose `key` (or `key`.`inner`) holds as many empty arrays as fit in `limit` bytes."""
    text = json.dumps(_event(**{key: {inner: "SLOT"} if inner else "SLOT"}))
    room = limit - len(text.encode()) + len('"SLOT"') - 2
    return text.replace('"SLOT"', "[" + ",".join(["[]"] * (room // 3)) + "]").encode()


def _event(**fields) -> dict:
    return {**samples.canonical_event("product_view", event_id=str(uuid.uuid4())), **fields}


def worst_requests(limit: int = 1_048_576, events: int = 500) -> dict[str, bytes]:
    """The most expensive request bodies within the limits that we found, by what each makes the handler do."""
    numbers = {f"k{j:02d}": [1.2345678901234567e-5] * 16 for j in range(32)}
    return {
        "500 valid events, 512 numbers each (parse, check every number)": _fill(
            lambda i: _event(properties=numbers), limit, events),
        "500 invalid events, 9 errors and 40 bad properties each (explain)": _fill(
            lambda i: {"event_id": i, "event_name": 2, "client_ts": 3, "client_id": 4, "session_id": 5, "user_id": 6,
                       "currency": 7, "properties": {f"k{j}": [[1]] * 17 for j in range(40)}, "x": 1}, limit, events),
        "one event, 1 MiB of arrays in properties (explain an anyOf)": _one_event_with("properties", limit, "a"),
        "one event, 1 MiB of arrays under an unknown key": _one_event_with("junk", limit),
        "500 events, lone surrogates in 512 strings each (find them)": _fill(
            lambda i: _event(properties={f"k{j:02d}": ["a\ud800"] * 16 for j in range(32)}), limit, events),
        "500 valid events, escapes to search in 512 strings each": _fill(
            lambda i: _event(properties={f"k{j:02d}": ["\\u0000"] * 16 for j in range(32)}), limit, events),
        "500 legacy events without ids (ids hashed from content)": _fill(
            lambda i: {"eventName": "click", "clientId": f"c{i}", "sessionId": "s",
                       "element": {"text": "t" * 1500, "dataset": {f"d{j}": "x" * 40 for j in range(10)}}}, limit, events),
        "nesting 500,000 deep": b'{"events": ' + b"[" * 500_000 + b"]" * 500_000 + b"}",
    }


def worst_request_cpu(settings, repeat: int = 3) -> dict[str, tuple[float, int]]:
    """{request: (median handler CPU seconds, status)} of `worst_requests`, in-process as `handler_cpu_per_event`."""
    stacks = load_stacks(settings)
    (api,) = [api for stack in stacks for api in stack.http_apis()]
    function = next(f for s in stacks for f in s.functions().values() if f.logical_id == "IngestFunction")
    ingest = LocalLambda(function, settings)
    headers = {"content-type": "application/json", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) bench"}
    ingest.invoke(api_event(api, {"events": samples.canonical_batch(2, seed=3)}))
    figures = {}
    for name, body in tqdm(worst_requests().items(), desc="worst requests", unit="req", leave=False):
        assert len(body) <= 1_048_576, (name, len(body))
        event = synthetic_event(api, "POST /clickstream", body, headers)
        seconds = []
        for _ in range(repeat):
            started = time.process_time()
            result = ingest.invoke(event)
            seconds.append(time.process_time() - started)
        assert result["statusCode"] < 500, (name, result)
        figures[name] = (sorted(seconds)[len(seconds) // 2], result["statusCode"])
    return figures


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
        worst = worst_request_cpu(settings)

    figures = {
        "machine": machine(),
        "single_events_per_s": round(args.single / seconds_single),
        "batch100_events_per_s": round(args.batched / seconds_batched),
        "handler_cpu_us_per_event_batch100": round(cpu * 1e6, 1),
        "worst_requests_cpu_s": {name: round(seconds, 3) for name, (seconds, _) in worst.items()},
    }
    print(f"machine: {figures['machine']}")
    print("| mode | events | events/s |")
    print("|---|---|---|")
    print(f"| single events, 1 per request | {args.single} | {figures['single_events_per_s']:,} |")
    print(f"| batches of 100 | {args.batched} | {figures['batch100_events_per_s']:,} |")
    print(f"handler CPU per event (batches of 100): {figures['handler_cpu_us_per_event_batch100']} µs")
    print("| worst request (≤ 1 MiB, ≤ 500 events) | status | handler CPU s |")
    print("|---|---:|---:|")
    for name, (seconds, status_code) in worst.items():
        print(f"| {name} | {status_code} | {seconds:.3f} |")
    print(f"slowest: {max(seconds for seconds, _ in worst.values()):.3f} CPU-s (target ≤ 0.5)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()

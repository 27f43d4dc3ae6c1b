"""Send the simulated shop's traffic (`clickstream.shop.simulate`) to a target the caller chooses.

    target = IngestTarget.from_templates(settings, aws.client("s3", settings))   # history mode
    target = HttpTarget(stack.status(settings)["ingest_url"])                    # live mode
    summary = send(config, target, truth_path="truth.json")

History mode stores each request through the ingest's own code (`clickstream.ingestion.ingest.ingest_batch`),
as the ingest Lambda would, with the simulated send time as its clock, so raw partitions and received_at show
the simulated days. Live mode POSTs each request as a browser tracker would; its timestamps are shifted so
the newest send is now and the server's clock is real, so it shows the real path, not the day-by-day figures
of the truth file.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx

from clickstream.infra.templates import TemplateError, find_function, load_stacks
from clickstream.ingestion.ingest import IngestSettings, ServerContext, ingest_batch
from clickstream.shop import tracker
from clickstream.shop.simulate import Request, SimulationConfig, Truth, generate

INGEST_ROUTE = "POST /clickstream"


class Target(Protocol):
    """Where `send` delivers: the requests to send, and a sender that returns the events each one stored."""

    mode: ClassVar[str]

    def traffic(self, config: SimulationConfig) -> Iterable[list[Request]]: ...

    def sender(self) -> AbstractContextManager[Callable[[Request], int]]: ...


@dataclass(frozen=True)
class IngestTarget:
    """History mode: each request through `ingest_batch` into `s3`, received at its simulated send time."""

    s3: Any
    ingest_settings: IngestSettings
    api_id: str | None = None
    stage: str | None = None
    mode: ClassVar[str] = "history"

    @classmethod
    def from_templates(cls, settings: Any, s3: Any) -> IngestTarget:
        """The ingest behind POST /clickstream as the templates configure it: its environment, API id and stage
        (plain strings, so the target pickles)."""
        stacks = load_stacks(settings)
        routes = [(api, route) for stack in stacks for api in stack.http_apis() for route in api.routes
                  if route.key == INGEST_ROUTE]
        if len(routes) != 1:
            raise TemplateError(f"expected one {INGEST_ROUTE} route in {settings.templates}, found {len(routes)}")
        api, route = routes[0]
        environment = {name: str(value) for name, value in find_function(stacks, route.function).environment.items()}
        return cls(s3, IngestSettings.from_env(environment), str(api.api_id), str(api.stage))

    def traffic(self, config: SimulationConfig) -> Iterable[list[Request]]:
        return generate(config)

    @contextmanager
    def sender(self) -> Iterator[Callable[[Request], int]]:
        yield self.store

    def store(self, request: Request) -> int:
        """Store one request as the ingest Lambda would have when it was sent; returns the events stored."""
        context = ServerContext(request_id=request.request_id, api_request_id=request.request_id[:18],
                                api_id=self.api_id, stage=self.stage, user_agent=request.user_agent,
                                source_ip_prefix=request.source_ip)
        return ingest_batch(request.events, context, self.s3, self.ingest_settings, request.received_at,
                            request.object_id).accepted


@dataclass(frozen=True)
class HttpTarget:
    """Live mode: each request POSTed to `url` with its browser's user agent, shifted so the newest send is now."""

    url: str
    timeout_s: float = 30.0
    mode: ClassVar[str] = "live"

    def traffic(self, config: SimulationConfig) -> Iterable[list[Request]]:
        generated = list(generate(config))
        shift_ms = time.time_ns() // 1_000_000 - max(r.sent_ms for requests in generated for r in requests)
        return ([request.shifted(shift_ms) for request in requests] for requests in generated)

    @contextmanager
    def sender(self) -> Iterator[Callable[[Request], int]]:
        with httpx.Client(timeout=self.timeout_s) as client:
            yield lambda request: self.post(request, client)

    def post(self, request: Request, client: httpx.Client) -> int:
        """POST one request's events in one batch; returns the events the API accepted."""
        return tracker.send_events(self.url, request.events, batch_size=len(request.events), client=client,
                                   headers={"user-agent": request.user_agent}).accepted


@dataclass(frozen=True)
class Summary:
    mode: str
    start: str
    days: int
    visitors: int
    bots: int
    seed: int
    requests: int
    objects: int
    events_sent: int  # every event of every request: retries and broken events included
    events_stored: int
    duplicates: int
    malformed: int
    human_events: int
    bot_events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events_stored / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "events_per_second": round(self.events_per_second)}


def send(
    config: SimulationConfig,
    target: Target,
    truth_path: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 8,
) -> Summary:
    """Send the configuration's traffic to `target`, `workers` requests at a time, and return what was stored;
    write the ground truth to `truth_path` if given. `progress(1)` after each visitor."""
    started = time.perf_counter()
    truth = Truth(config)
    counts: Counter = Counter()
    in_flight: deque[Future] = deque()

    def collect(future: Future) -> None:
        accepted = future.result()
        counts["stored"] += accepted
        counts["objects"] += accepted > 0

    with target.sender() as deliver, ThreadPoolExecutor(max_workers=workers) as pool:
        for requests in target.traffic(config):
            truth.add(requests)
            for request in requests:
                counts["requests"] += 1
                counts["sent"] += len(request.events)
                in_flight.append(pool.submit(deliver, request))
                while len(in_flight) >= 4 * workers:
                    collect(in_flight.popleft())
            if progress:
                progress(1)
        while in_flight:
            collect(in_flight.popleft())
    if counts["stored"] != truth.stored:
        raise RuntimeError(f"the ingest stored {counts['stored']} events but {truth.stored} were valid: "
                           "the truth would be wrong")
    if truth_path:
        Path(truth_path).write_text(truth.dumps(), encoding="utf-8")
    return Summary(
        mode=target.mode, start=config.start.isoformat(), days=config.days, visitors=config.visitors,
        bots=config.bots, seed=config.seed, requests=counts["requests"], objects=counts["objects"],
        events_sent=counts["sent"], events_stored=counts["stored"], duplicates=truth.duplicates,
        malformed=truth.malformed, human_events=truth.events, bot_events=truth.bots["events"],
        seconds=round(time.perf_counter() - started, 3),
    )

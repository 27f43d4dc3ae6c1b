"""Send the simulated shop's traffic (`clickstream.shop.simulate`) to a target the caller chooses.

    target = IngestTarget.from_templates(settings, aws.client("s3", settings))          # history mode
    target = HttpTarget.signed_in(settings, stack.status(settings)["ingest_url"])       # live mode
    summary = send(config, target, truth_path="truth.json")

The simulator's signed-in visitors are SIMULATED_SHOPPERS real users of the shop's Cognito user pool (created
once, as `clickstream shopper create` does: `shoppers.ensure_shoppers`). Their events go as a tracker sends
them, to the authorized route: a request is split where the signed-in shopper changes (`signed_in_parts`), so
it may write more raw objects than one.

History mode stores each part through the ingest's own code (`clickstream.ingestion.ingest.ingest_batch`), as
the ingest Lambda would, with the simulated send time as its clock, so raw partitions and received_at show the
simulated days; a signed-in part is stored with the claims a JWT authorizer would have passed: the shopper's
sub. Live mode signs the shoppers in through Cognito and POSTs signed-in parts with their ID tokens to
`POST /clickstream/user`, the others to `POST /clickstream`. Its timestamps are shifted so the newest send is
now and the server's clock is real, so it shows the real path, not the day-by-day figures of the truth file;
ID tokens last an hour, so a live run should too.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping, NamedTuple, Protocol

import httpx

from clickstream.infra.templates import TemplateError, find_function, load_stacks
from clickstream.ingestion.ingest import IngestResult, IngestSettings, ServerContext, ingest_batch
from clickstream.shop import shoppers, tracker
from clickstream.shop.simulate import SIMULATED_SHOPPERS, Request, SimulationConfig, Truth, generate, shopper_email

INGEST_ROUTE = "POST /clickstream"
SIGNED_IN_PATH = "/user"  # POST /clickstream/user: the route behind the JWT authorizer
SHOPPERS = tuple(shopper_email(number) for number in range(SIMULATED_SHOPPERS))


class Stored(NamedTuple):
    """What delivering one simulated request stored: events and raw objects."""

    events: int
    objects: int


class Target(Protocol):
    """Where `send` delivers: the requests to send, and a sender that returns what each one stored."""

    mode: ClassVar[str]

    def traffic(self, config: SimulationConfig) -> Iterable[list[Request]]: ...

    def sender(self) -> AbstractContextManager[Callable[[Request], Stored]]: ...


def signed_in_user(event: dict[str, Any]) -> str | None:
    """The shopper a signed-in visitor's tracker would have proven with a token, None for an anonymous event."""
    return event.get("user_id") if event.get("user_login_state") == "logged_in" else None


def signed_in_parts(request: Request) -> list[tuple[str | None, Request]]:
    """The request split where the signed-in shopper changes, in order: (shopper's email or None, part). The first
    part keeps the request's ids; the others get ids derived from them."""
    parts = []
    for n, (user_id, events) in enumerate(itertools.groupby(request.events, key=signed_in_user)):
        ids = {} if n == 0 else {"request_id": str(uuid.uuid5(request.object_id, f"request-{n}")),
                                 "object_id": uuid.uuid5(request.object_id, f"object-{n}")}
        parts.append((user_id, replace(request, events=tuple(events), **ids)))
    return parts


@dataclass(frozen=True)
class IngestTarget:
    """History mode: each request through `ingest_batch` into `s3`, received at its simulated send time; `subs`
    are the simulated shoppers' subs by email."""

    s3: Any
    ingest_settings: IngestSettings
    api_id: str | None = None
    stage: str | None = None
    subs: Mapping[str, str] = field(default_factory=dict)
    mode: ClassVar[str] = "history"

    @classmethod
    def from_templates(cls, settings: Any, s3: Any) -> IngestTarget:
        """The ingest behind POST /clickstream as the templates configure it: its environment, API id and stage
        (plain strings, so the target pickles), and the simulated shoppers of the target's user pool."""
        stacks = load_stacks(settings)
        routes = [(api, route) for stack in stacks for api in stack.http_apis() for route in api.routes
                  if route.key == INGEST_ROUTE]
        if len(routes) != 1:
            raise TemplateError(f"expected one {INGEST_ROUTE} route in {settings.templates}, found {len(routes)}")
        api, route = routes[0]
        environment = {name: str(value) for name, value in find_function(stacks, route.function).environment.items()}
        return cls(s3, IngestSettings.from_env(environment), str(api.api_id), str(api.stage),
                   shoppers.ensure_shoppers(settings, SHOPPERS))

    def traffic(self, config: SimulationConfig) -> Iterable[list[Request]]:
        return generate(config)

    @contextmanager
    def sender(self) -> Iterator[Callable[[Request], Stored]]:
        yield self.store

    def store(self, request: Request) -> Stored:
        """Store one request as the ingest Lambda would have when it was sent, each signed-in part with its
        shopper's sub as the verified user_id (`signed_in_parts`)."""
        results = [self._store_part(part, shopper and _known(self.subs, shopper))
                   for shopper, part in signed_in_parts(request)]
        return Stored(sum(r.accepted for r in results), sum(r.object_key is not None for r in results))

    def _store_part(self, request: Request, verified_user_id: str | None) -> IngestResult:
        context = ServerContext(request_id=request.request_id, api_request_id=request.request_id[:18],
                                api_id=self.api_id, stage=self.stage, user_agent=request.user_agent,
                                source_ip_prefix=request.source_ip)
        return ingest_batch(request.events, context, self.s3, self.ingest_settings, request.received_at,
                            request.object_id, verified_user_id=verified_user_id)


def _known(identities: Mapping[str, str], shopper: str) -> str:
    if shopper not in identities:
        raise KeyError(f"{shopper} is not a simulated shopper of this target (build it with from_templates or "
                       "signed_in)")
    return identities[shopper]


@dataclass(frozen=True)
class HttpTarget:
    """Live mode: each request POSTed to `url` with its browser's user agent, shifted so the newest send is now;
    a signed-in part to `url` + /user with its shopper's ID token from `tokens` (by email)."""

    url: str
    tokens: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    mode: ClassVar[str] = "live"

    @classmethod
    def signed_in(cls, settings: Any, url: str) -> HttpTarget:
        """The API at `url`, with the simulated shoppers signed in through the target's user pool."""
        return cls(url, shoppers.signed_in_shoppers(settings, SHOPPERS))

    def traffic(self, config: SimulationConfig) -> Iterable[list[Request]]:
        generated = list(generate(config))
        shift_ms = time.time_ns() // 1_000_000 - max(r.sent_ms for requests in generated for r in requests)
        return ([request.shifted(shift_ms) for request in requests] for requests in generated)

    @contextmanager
    def sender(self) -> Iterator[Callable[[Request], Stored]]:
        with httpx.Client(timeout=self.timeout_s) as client:
            yield lambda request: self.post(request, client)

    def post(self, request: Request, client: httpx.Client) -> Stored:
        """POST each part of one request (`signed_in_parts`) in one batch: anonymous parts to `url`, signed-in
        ones with their shopper's token to the authorized route; returns what the API stored."""
        stored = []
        for shopper, part in signed_in_parts(request):
            headers = {"user-agent": part.user_agent}
            if shopper:
                headers["authorization"] = f"Bearer {_known(self.tokens, shopper)}"
            url = self.url.rstrip("/") + SIGNED_IN_PATH if shopper else self.url
            stored.append(tracker.send_events(url, part.events, batch_size=len(part.events), client=client,
                                              headers=headers).accepted)
        return Stored(sum(stored), sum(accepted > 0 for accepted in stored))


@dataclass(frozen=True)
class Summary:
    mode: str
    start: str
    days: int
    visitors: int
    bots: int
    seed: int
    requests: int  # the browsers' requests; a signed-in part is sent as a request of its own
    objects: int  # raw objects written
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
        stored = future.result()
        counts["stored"] += stored.events
        counts["objects"] += stored.objects

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

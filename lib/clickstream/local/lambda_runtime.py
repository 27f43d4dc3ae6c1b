"""A local Lambda runtime: runs the handler named in the template in-process, with its environment.

moto cannot run Python handlers without Docker, so this imports `<Source>/<module>.py` by file path
(no sys.path edits) and calls `handler(event, context)` with a context like Lambda's
(`clickstream.aws.LambdaContext`); a local caller that follows a run's progress passes a callback, which
the handler receives as `handler(event, context, progress=...)`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping

from clickstream.aws import LOCAL_CREDENTIALS, LambdaContext
from clickstream.infra.templates import LocalFunction, find_function, load_stacks
from clickstream.settings import Settings

log = logging.getLogger(__name__)
_environ_lock = threading.RLock()


class LambdaTimeoutError(RuntimeError):
    """The handler ran past the function's Timeout; Lambda would have killed it and lost the result."""


def runtime_environment(function: LocalFunction, settings: Settings) -> dict[str, str]:
    """The function's environment from the template, plus what Lambda and the local target add."""
    return {
        **function.environment,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url,
        "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
        "CLICKSTREAM_TARGET": "local",
        "CLICKSTREAM_HOME": str(settings.home),
        "LAMBDA_TASK_ROOT": str(function.source_dir),
        "_HANDLER": function.handler,
    }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Apply `values` to os.environ for the duration of one invocation, then restore it."""
    with _environ_lock:
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


def load_module(path: Path, name: str) -> ModuleType:
    """Import the file `path` as module `name`, registered in sys.modules as a normal import would be."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look modules up there
    spec.loader.exec_module(module)
    return module


def load_handler(function: LocalFunction) -> Callable[..., Any]:
    module_name, _, attribute = function.handler.rpartition(".")
    path = function.source_dir / f"{module_name.replace('.', '/')}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{function.logical_id}: handler module {path} not found (Handler {function.handler})")
    return getattr(load_module(path, f"clickstream_lambda_{function.logical_id}_{module_name}"), attribute)


class LocalLambda:
    """One function of the template, ready to invoke."""

    def __init__(self, function: LocalFunction, settings: Settings, scoped_environment: bool = True):
        """With `scoped_environment` False the caller has applied `self.env` to the process already
        (a process serving functions whose environments agree), so invocations run concurrently."""
        self.function = function
        self.settings = settings
        self.env = runtime_environment(function, settings)
        self.scoped_environment = scoped_environment
        self._handler: Callable[..., Any] | None = None

    def context(self, request_id: str | None = None) -> LambdaContext:
        return LambdaContext(
            function_name=self.function.name,
            memory_limit_in_mb=self.function.memory,
            timeout_seconds=self.function.timeout,
            region=self.settings.region,
            aws_request_id=request_id or str(uuid.uuid4()),
        )

    def init(self) -> None:
        """Import the handler module (Lambda's init phase); invoke does it on first use otherwise."""
        with environment(self.env) if self.scoped_environment else nullcontext():
            if self._handler is None:
                self._handler = load_handler(self.function)

    def invoke(self, event: Any, request_id: str | None = None, *, progress: Callable[[Any], None] | None = None) -> Any:
        """Run the handler once; `progress`, when given, is passed to it as `progress=` (Lambda passes only the
        event and the context, so a handler taking it must default it to None)."""
        self.init()
        context = self.context(request_id)
        extra = {} if progress is None else {"progress": progress}
        with environment(self.env) if self.scoped_environment else nullcontext():
            result = self._handler(event, context, **extra)
        if context.get_remaining_time_in_millis() == 0:
            raise LambdaTimeoutError(
                f"{self.function.name} ran past its {self.function.timeout} s Timeout (request {context.aws_request_id})"
            )
        return result


def invoke_function(
    settings: Settings, logical_id: str, event: Any, progress: Callable[[Any], None] | None = None
) -> Any:
    """Invoke the template's function `logical_id` once, as `aws lambda invoke` would."""
    function = find_function(load_stacks(settings), logical_id)
    return LocalLambda(function, settings).invoke(event, progress=progress)

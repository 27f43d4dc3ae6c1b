"""The local Lambda runtime runs the template's handler in-process with its environment and a context."""

import os
import textwrap

import pytest

from clickstream import aws
from clickstream.infra.templates import LocalFunction
from clickstream.local.lambda_runtime import LambdaTimeoutError, LocalLambda
from clickstream.settings import Settings


def make_function(tmp_path, body: str, timeout: int = 3) -> LocalFunction:
    (tmp_path / "app.py").write_text(textwrap.dedent(body))
    return LocalFunction("Fn", "fn-local", "app.main", tmp_path, {"GREETING": "hello"}, timeout, 128, "python3.12")


def test_handler_sees_its_environment_and_context_then_env_is_restored(tmp_path):
    function = make_function(tmp_path, """
        import os
        def main(event, context):
            return {"greeting": os.environ["GREETING"], "name": context.function_name,
                    "request": context.aws_request_id, "remaining": context.get_remaining_time_in_millis(),
                    "endpoint": os.environ["AWS_ENDPOINT_URL"], "event": event}
    """)
    settings = Settings.from_env({}, aws_port=45678)
    os.environ.pop("GREETING", None)
    result = LocalLambda(function, settings).invoke({"x": 1}, request_id="req-1")
    assert result["greeting"] == "hello" and result["name"] == "fn-local" and result["request"] == "req-1"
    assert 2000 < result["remaining"] <= 3000
    assert result["endpoint"] == "http://127.0.0.1:45678" and result["event"] == {"x": 1}
    assert "GREETING" not in os.environ


def test_the_context_names_the_function_as_lambdas_does(tmp_path):
    function = make_function(tmp_path, """
        def main(event, context):
            return [context.invoked_function_arn, context.log_group_name, context.log_stream_name,
                    context.memory_limit_in_mb, context.function_version]
    """)
    settings = Settings.from_env({"AWS_REGION": "eu-west-1"})
    arn, group, stream, memory, version = LocalLambda(function, settings).invoke({}, request_id="req-2")
    assert arn == "arn:aws:lambda:eu-west-1:123456789012:function:fn-local"
    assert (group, stream, memory, version) == ("/aws/lambda/fn-local", "local/req-2", 128, "$LATEST")


def test_progress_is_passed_to_the_handler_only_when_given(tmp_path):
    function = make_function(tmp_path, """
        def main(event, context, progress=None):
            if progress is not None:
                progress(event["step"])
            return progress is None
    """)
    lambda_ = LocalLambda(function, Settings.from_env({}))
    seen = []
    assert lambda_.invoke({"step": 1}, progress=seen.append) is False and seen == [1]
    assert lambda_.invoke({"step": 2}) is True and seen == [1], "called as Lambda calls it: event and context"


def test_a_progress_callback_for_a_handler_that_takes_none_is_an_error_not_dropped(tmp_path):
    function = make_function(tmp_path, """
        def main(event, context):
            return "ran"
    """)
    with pytest.raises(TypeError, match="progress"):
        LocalLambda(function, Settings.from_env({})).invoke({}, progress=print)


def test_remaining_time_counts_down_from_the_timeout(monkeypatch):
    clock = iter([100.25, 103.5])
    monkeypatch.setattr(aws.time, "monotonic", lambda: next(clock))
    context = aws.LambdaContext(function_name="fn", memory_limit_in_mb=128, timeout_seconds=3, _started=100.0)
    assert context.get_remaining_time_in_millis() == 2750
    assert context.get_remaining_time_in_millis() == 0, "never below zero"


def test_a_handler_past_its_timeout_loses_its_result(tmp_path):
    function = make_function(tmp_path, """
        import time
        def main(event, context):
            time.sleep(1.1)
            return "too late"
    """, timeout=1)
    with pytest.raises(LambdaTimeoutError, match="1 s Timeout"):
        LocalLambda(function, Settings.from_env({})).invoke({})


def test_missing_handler_module_names_the_path(tmp_path):
    function = LocalFunction("Fn", "fn", "nope.main", tmp_path, {}, 3, 128, "python3.12")
    with pytest.raises(FileNotFoundError, match="nope.py"):
        LocalLambda(function, Settings.from_env({})).invoke({})

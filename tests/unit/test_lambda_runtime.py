"""The local Lambda runtime runs the template's handler in-process with its environment and a context."""

import os
import textwrap

import pytest

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

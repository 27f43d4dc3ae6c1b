"""The workshop rehearsed on the aws target: notebooks 00-07 run in order, with TARGET = "aws", against the
stacks notebook 01 deploys into the moto of a private local stack (clickstream.target's rehearsal mode; the local
parts stand in for what moto cannot serve), executed by papermill in one environment.

Each lesson must say it ran as a rehearsal (the first line of `Workshop.description()`) and, once the stacks exist,
show port-forward commands naming the moto stacks' real warehouse instance. A lesson after a failed one fails with
"an earlier notebook failed". The executed copies are kept in a folder under pytest's tmp dir, named on failure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import papermill
import pytest
from botocore.exceptions import ClientError
from papermill.exceptions import PapermillExecutionError

from clickstream import aws
from clickstream.infra.deploy import DeployConfig, stack_outputs
from clickstream.infra.templates import stack_name
from clickstream.local.stack import private_stack
from clickstream.settings import Settings
from clickstream.target import choose_mode, rehearsal_environment, target_line

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
# What a lesson's safety switches need besides TARGET: 01 keeps its stacks for 02-06, 07 destroys them.
PARAMETERS = {"01": {"I_ACCEPT_THE_AWS_COST": True, "DESTROY_AT_END": False}, "07": {"I_MEAN_DESTROY": True}}
# Lessons that run before 01 deploys the stacks: no port-forward command to show yet.
BEFORE_THE_STACKS = {"00"}
CELL_TIMEOUT = 600
LESSON_TIMEOUT = 900  # seconds: the slowest lesson (04) takes about 90 s here, the first also starts the stack
# The port forwards `Workshop.description()` lists, as the workshop built them.
PORT_FORWARD_TARGET = re.compile(r"port forward: aws ssm start-session --target (\S+) ")


@dataclass
class Series:
    """The rehearsal's stack and environment, where the executed copies go, and what the lessons so far left."""

    local: Settings
    env: dict[str, str]
    executed: Path
    failed: str | None = None
    instance_id: str | None = None

    def read_instance_id(self) -> None:
        """The warehouse instance of the analytics stack in moto, while it exists (07 deletes it)."""
        prefix = DeployConfig.load(self.local).prefix
        try:
            instance_id = stack_outputs(aws.client("cloudformation", self.local),
                                        stack_name("analytics", prefix))["DwInstanceId"]
        except (ClientError, KeyError):
            return
        reservations = aws.client("ec2", self.local).describe_instances(InstanceIds=[instance_id])["Reservations"]
        assert reservations[0]["Instances"][0]["InstanceId"] == instance_id
        self.instance_id = instance_id


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory):
    """A private local stack (stopped by pid at the end) and the environment that makes the kernels rehearse
    the aws target against its moto."""
    with private_stack() as local, pytest.MonkeyPatch.context() as patch:
        env = {"CLICKSTREAM_HOME": str(local.home),
               **{var: str(getattr(local, name)) for name, var in Settings.PORT_ENV.items()},
               **rehearsal_environment(local)}
        for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "CLICKSTREAM_STACK_PREFIX"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        assert choose_mode(Settings.from_env(env), env) == "rehearsal"
        yield Series(local=local, env=env, executed=tmp_path_factory.mktemp("rehearsal"))


def outputs_text(notebook) -> str:
    """Everything the notebook's code cells printed or displayed as text."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.integration
@pytest.mark.timeout(LESSON_TIMEOUT)
@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_the_lesson_runs_on_the_aws_target(lesson: Path, series: Series):
    if series.failed:
        pytest.fail(f"an earlier notebook failed: {series.failed} (executed copies: {series.executed})")
    series.failed = lesson.name  # until every check below passed
    executed = series.executed / lesson.name
    try:
        notebook = papermill.execute_notebook(
            lesson, executed, parameters={"TARGET": "aws", **PARAMETERS.get(lesson.name[:2], {})},
            cwd=lesson.parent, kernel_name="python3", execution_timeout=CELL_TIMEOUT, progress_bar=False)
    except PapermillExecutionError as error:
        pytest.fail(f"{lesson.name}: cell {error.exec_count} raised {error.ename}: {error.evalue}\n"
                    f"(executed copy: {executed})")
    text = outputs_text(notebook)
    expected_line = target_line(Settings.from_env(series.env), series.env)
    assert expected_line in text, f"{lesson.name} did not show that it ran as a rehearsal (executed copy: {executed})"
    series.read_instance_id()
    forwarded_to = set(PORT_FORWARD_TARGET.findall(text))
    if lesson.name[:2] not in BEFORE_THE_STACKS:
        assert series.instance_id and series.instance_id.startswith("i-"), "no warehouse instance in moto"
        assert forwarded_to == {series.instance_id}, (
            f"{lesson.name}: port forwards to {forwarded_to}, not to {series.instance_id} (executed copy: {executed})")
    else:
        assert forwarded_to <= {series.instance_id}, forwarded_to
    series.failed = None

"""Small readers of decoded CloudFormation templates, and the writer of broken copies, shared by the template
tests."""

from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from clickstream.infra.templates import Template


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def getatt_target(value: Any) -> str:
    """The logical id of `!GetAtt X.Arn` (both decoded forms)."""
    assert isinstance(value, dict) and list(value) == ["Fn::GetAtt"], f"not a GetAtt: {value}"
    arg = value["Fn::GetAtt"]
    return arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]


def write_templates(templates: Iterable[Template], folder: Path) -> Path:
    """Each template's model (as load_template decodes it, possibly changed) written to `folder` as YAML in long
    form, which load_template and cfn-lint read back as the same model."""
    folder.mkdir(parents=True, exist_ok=True)
    for template in templates:
        (folder / template.name).write_text(yaml.safe_dump(template.body, sort_keys=False, width=120))
    return folder


def broken_copy(source: Path, folder: Path, breaks: Callable[[dict[str, Template]], None]) -> Path:
    """The templates of `source`, loaded into the model, changed by `breaks` (given them by file name) and
    written to `folder`."""
    templates = {path.name: Template.load(path) for path in sorted(source.glob("*.yaml"))}
    breaks(templates)
    return write_templates(templates.values(), folder)

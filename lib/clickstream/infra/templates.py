"""The CloudFormation templates: one loader, one model, one evaluator of their intrinsic functions.

- `load_template`: a template file as plain data, CloudFormation's short forms as long ones.
- `Template`: one file; `TemplateSet`: every template of a folder, each deployed as the stack
  `stack_name(stem, prefix)`, with one export table and the dependency order (exporters first).
- `parameter_values`: a template's parameter values for a target (local or aws), with overrides.
- `Evaluator`: Ref, Fn::Sub, Fn::GetAtt, Fn::Join, Fn::Select and Fn::ImportValue; subclasses say what a Ref,
  a GetAtt and an import become. `Stack` gives values: the local wiring (buckets, the HTTP API's routes, each
  Lambda's handler and environment, as `sam local` does) and the deployer's names; clickstream.infra.checks
  gives symbols ({template.yaml#Resource}) its rules compare.

The templates are the single source of truth for names, routes, environment, CORS and schedules: nothing
local is configured twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from clickstream.settings import LOCAL_ACCOUNT_ID, LOCAL_NAME_SUFFIX, Settings

DEFAULT_PREFIX = "clickstream"
SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
PSEUDO_PARAMETERS = {"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition", "AWS::Region",
                     "AWS::StackId", "AWS::StackName", "AWS::URLSuffix"}

# Local values of parameters that only matter in AWS (network ids), by parameter type: a template declares
# them without a default (the deployer must choose), and the local stack, which has no VPC, gets these.
LOCAL_PLACEHOLDERS: dict[str, Any] = {
    "AWS::EC2::VPC::Id": "vpc-local",
    "AWS::EC2::Subnet::Id": "subnet-local",
    "AWS::EC2::SecurityGroup::Id": "sg-local",
    "List<AWS::EC2::Subnet::Id>": ["subnet-local"],
    "List<AWS::EC2::SecurityGroup::Id>": ["sg-local"],
    "AWS::EC2::Image::Id": "ami-local",
}


class TemplateError(ValueError):
    """A template uses something the resolver does not understand, or refers to what it does not declare."""


class MissingExportError(TemplateError):
    """Fn::ImportValue of an export no template (yet) declares."""


class UnknownParameterError(TemplateError):
    """Overrides name parameters the template does not declare."""


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    name: str
    handler: str
    source_dir: Path
    environment: dict[str, str]
    timeout: int
    memory: int
    runtime: str

    def summary(self, project: Path) -> dict[str, str | int]:
        """What the template sets for the function, for people (the code folder relative to `project`)."""
        return {
            "function name": self.name,
            "handler": self.handler,
            "code folder": str(self.source_dir.relative_to(project)),
            "runtime": self.runtime,
            "memory (MB)": self.memory,
            "timeout (s)": self.timeout,
        }


@dataclass(frozen=True)
class JwtAuthorizer:
    """An HTTP API's JWT authorizer: where the token is, which issuer signs it, which audiences it may name."""

    logical_id: str
    identity_source: tuple[str, ...]  # ("$request.header.Authorization",)
    issuer: str
    audience: tuple[str, ...]


@dataclass(frozen=True)
class HttpRoute:
    key: str  # "POST /clickstream", "ANY /{proxy+}" or "$default"
    function: str  # logical id of the integrated function
    authorizer: JwtAuthorizer | None = None

    @property
    def method(self) -> str:
        return "ANY" if self.key == "$default" else self.key.split(" ", 1)[0]

    @property
    def path(self) -> str | None:
        return None if self.key == "$default" else self.key.split(" ", 1)[1]


@dataclass(frozen=True)
class HttpApi:
    logical_id: str
    name: str
    api_id: str
    stage: str
    routes: tuple[HttpRoute, ...]
    cors: dict[str, Any] | None


@dataclass(frozen=True)
class LocalUserPoolClient:
    logical_id: str
    settings: dict[str, Any]  # CreateUserPoolClient's parameters, without UserPoolId


@dataclass(frozen=True)
class LocalUserPool:
    """A Cognito user pool and its app clients; `settings` are CreateUserPool's parameters (the template's
    properties of the same names; PoolName from UserPoolName)."""

    logical_id: str
    name: str
    settings: dict[str, Any]
    clients: tuple[LocalUserPoolClient, ...]


@dataclass(frozen=True)
class LocalBucket:
    logical_id: str
    name: str
    encryption: str | None


@dataclass(frozen=True)
class LocalSchedule:
    """An EventBridge rule with a ScheduleExpression that invokes a function of the same template."""

    logical_id: str
    name: str
    expression: str  # "rate(1 hour)", "cron(0 * * * ? *)"
    function: str  # logical id of the target function
    enabled: bool
    input: Any = None  # the target's Input (parsed JSON); None: EventBridge sends its scheduled event


@dataclass(frozen=True)
class LocalSecret:
    """A Secrets Manager secret; `local_value` (Metadata.clickstream.LocalValue) says what `up` writes into it."""

    logical_id: str
    name: str
    local_value: str | None


class _TemplateLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when it is there
    """YAML with CloudFormation's short forms (!Ref X, !GetAtt A.B, !Sub ..., ...) read as their long forms."""


def _intrinsic(loader: _TemplateLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)
_TemplateLoader.yaml_implicit_resolvers = {  # strings, as CloudFormation reads them: no dates, no YAML 1.1 yes/no
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_template(path: Path) -> dict:
    """A CloudFormation YAML template as plain data, short forms as long ones (what cfn-lint's loader reads, a
    test checks, without importing cfn-lint: half a second at the start of every `clickstream` command)."""
    with open(path, encoding="utf-8") as stream:
        return yaml.load(stream, Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader with CloudFormation's tags


def stack_name(stem: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The one rule for stack names: `<prefix>-<template stem>` (clickstream-ingestion)."""
    return f"{prefix}-{stem}"


def get_att_arguments(arg: Any) -> tuple[str, str]:
    """(logical id, attribute) of Fn::GetAtt, in either decoded form ("A.B" or [A, B])."""
    logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
    return logical_id, attribute


def import_arguments(node: Any) -> Iterable[Any]:
    """The argument of every Fn::ImportValue below `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::ImportValue":
                yield value
            else:
                yield from import_arguments(value)
    elif isinstance(node, list):
        for item in node:
            yield from import_arguments(item)


def references(node: Any) -> set[tuple[str, str | None]]:
    """(logical id or parameter, attribute) pairs a node refers to by Ref, Fn::GetAtt and Fn::Sub (not DependsOn)."""
    found: set[tuple[str, str | None]] = set()
    if isinstance(node, list):
        for item in node:
            found |= references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add((value, None))
            elif key == "Fn::GetAtt":
                lid, attr = get_att_arguments(value)
                found.add((lid, attr if isinstance(attr, str) else None))
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                for name in SUB_VARIABLE.findall(text):
                    if name not in variables:
                        lid, _, attr = name.partition(".")
                        found.add((lid, attr or None))
                found |= references(variables)
            elif key != "DependsOn":
                found |= references(value)
    return found


def substitute(node: Any, values: dict[tuple[str, str | None], Any]) -> Any:
    """`node` with each Ref, Fn::GetAtt and ${...} whose (logical id, attribute) is in `values` replaced by its value."""
    if isinstance(node, list):
        return [substitute(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, value), = node.items()
        if key == "Ref" and (value, None) in values:
            return values[(value, None)]
        if key == "Fn::GetAtt" and get_att_arguments(value) in values:
            return values[get_att_arguments(value)]
        if key == "Fn::Sub":
            text, variables = (value, None) if isinstance(value, str) else (value[0], value[1])

            def replace(match: re.Match) -> str:
                lid, _, attr = match.group(1).partition(".")
                if variables and match.group(1) in variables:
                    return match.group(0)
                return values.get((lid, attr or None), match.group(0))

            text = SUB_VARIABLE.sub(replace, text)
            return {"Fn::Sub": text if variables is None else [text, substitute(variables, values)]}
    return {key: substitute(value, values) for key, value in node.items()}


@dataclass
class Template:
    """One template file: its resources, parameters (their declarations) and outputs."""

    path: Path
    body: dict

    @classmethod
    def load(cls, path: Path) -> "Template":
        return cls(Path(path), load_template(path))

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def resources(self) -> dict[str, dict]:
        return self.body.get("Resources") or {}

    @property
    def parameters(self) -> dict[str, dict]:
        return self.body.get("Parameters") or {}

    @property
    def outputs(self) -> dict[str, dict]:
        return self.body.get("Outputs") or {}

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {lid: res for lid, res in self.resources.items() if res.get("Type") == resource_type}

    def props(self, logical_id: str) -> dict:
        return self.resources[logical_id].get("Properties") or {}

    def reference_problems(self) -> list[str]:
        """Every Ref, Fn::GetAtt, ${...} and DependsOn that names nothing the template declares (empty: none)."""
        resources = self.resources
        declared = set(resources) | set(self.parameters) | PSEUDO_PARAMETERS
        problems = []
        for where, node in [*resources.items(), *(("output " + k, v) for k, v in self.outputs.items())]:
            if isinstance(node, dict) and where in resources and not node.get("Type"):
                problems.append(f"{where} has no Type")
            for lid, attr in sorted(references(node), key=str):
                if lid not in declared:
                    problems.append(f"{where} refers to {lid}{'.' + attr if attr else ''}, which the template does "
                                    "not declare (no resource or parameter of that name)")
                elif attr and lid not in resources:
                    problems.append(f"{where} asks for attribute {attr} of {lid}, which is not a resource")
            depends = node.get("DependsOn", []) if isinstance(node, dict) else []
            for name in [depends] if isinstance(depends, str) else depends:
                if name not in resources:
                    problems.append(f"{where} DependsOn {name}, which the template does not declare")
        return problems


def parameter_values(template: Template, target: str, stack_names: Mapping[str, str] | None = None,
                     overrides: Mapping[str, Any] | None = None,
                     placeholders: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The template's parameter values for `target` ("local" or "aws"); None: unset.

    The template's Default; locally, Metadata.clickstream.LocalParameters and NameSuffix `local`; a
    `<Stem>StackName` parameter names the sibling stack (`stack_names`: stem -> stack name); `overrides` win;
    a parameter still unset gets the placeholder of its type, if `placeholders` has one; CommaDelimitedList and
    List<...> values given as text become lists."""
    specs = template.parameters
    values: dict[str, Any] = {name: spec.get("Default") for name, spec in specs.items()}
    if target == "local":
        local_values = template.body.get("Metadata", {}).get("clickstream", {}).get("LocalParameters") or {}
        unknown = sorted(set(local_values) - set(specs))
        if unknown:
            raise TemplateError(f"{template.name}: Metadata.clickstream.LocalParameters names undeclared parameters "
                                f"{unknown}")
        values.update(local_values)
        if "NameSuffix" in values:
            values["NameSuffix"] = LOCAL_NAME_SUFFIX
    for name in specs:
        sibling = name.removesuffix("StackName").lower()
        if name.endswith("StackName") and sibling in (stack_names or {}):
            values[name] = stack_names[sibling]
    unknown = sorted(set(overrides or {}) - set(specs))
    if unknown:
        raise UnknownParameterError(f"{template.name} declares no parameters {unknown}")
    values.update(overrides or {})
    for name, spec in specs.items():
        kind = str(spec.get("Type", ""))
        if values[name] is None and kind in (placeholders or {}):
            values[name] = copy.deepcopy(placeholders[kind])
        if (kind == "CommaDelimitedList" or kind.startswith("List<")) and isinstance(values[name], str):
            values[name] = [item.strip() for item in values[name].split(",")]
    return values


def _parameters_named_in_metadata(template: Template, key: str) -> dict[str, str]:
    named = template.body.get("Metadata", {}).get("clickstream", {}).get(key) or {}
    unknown = sorted(set(named) - set(template.parameters))
    if unknown:
        raise TemplateError(f"{template.name}: Metadata.clickstream.{key} names undeclared parameters {unknown}")
    return dict(named)


def managed_prefix_lists(template: Template) -> dict[str, str]:
    """Parameter -> name of the AWS-managed prefix list whose id it holds (Metadata.clickstream.ManagedPrefixLists;
    the id differs per region, the name does not)."""
    return _parameters_named_in_metadata(template, "ManagedPrefixLists")


def image_parameters(template: Template) -> dict[str, str]:
    """Image parameter -> the public SSM parameter naming the image it starts from
    (Metadata.clickstream.ImageParameters; clickstream deploy pins the image per deployment)."""
    return _parameters_named_in_metadata(template, "ImageParameters")


class Evaluator:
    """CloudFormation's intrinsic functions over one template's values, with one ${...} pattern.

    Subclasses say what a Ref, a GetAtt and an import become (`ref`, `get_att`, `import_value`), what a
    function they do not evaluate and a plain mapping become (`unsupported`, `mapping`), and how a value
    reads inside a string (`string`)."""

    template: Template

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                return self.get_att(*get_att_arguments(arg))
            if fn == "Fn::Sub":
                return self.sub(arg)
            if fn == "Fn::Join":
                separator, items = arg
                return separator.join(self.string(item) for item in self.resolve(items))
            if fn == "Fn::Select":
                index, items = arg
                items = self.resolve(items)
                return items[int(self.resolve(index))] if isinstance(items, list) else self.unsupported(fn, value)
            if fn == "Fn::ImportValue":
                return self.import_value(self.text(arg))
            if fn == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.condition(condition) else when_false)
            if fn == "Fn::Equals":
                left, right = self.resolve(arg)
                return left == right
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Condition":
                return self.condition(arg)
            if fn.startswith("Fn::"):
                return self.unsupported(fn, value)
        return self.mapping(value)

    def condition(self, name: str) -> bool:
        """The template's condition `name` (its Conditions section), evaluated."""
        conditions = self.template.body.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"{self.template.name}: unknown condition {name}")
        return bool(self.resolve(conditions[name]))

    def text(self, value: Any) -> str:
        """The value resolved, as it reads inside a string."""
        return self.string(self.resolve(value))

    def sub(self, arg: Any) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return self.text(variables[name])
            logical_id, _, attribute = name.partition(".")
            if attribute and logical_id in self.template.resources:
                return self.string(self.get_att(logical_id, attribute))
            return self.string(self.ref(name))

        return SUB_VARIABLE.sub(replace, template).replace("${!", "${")

    def mapping(self, value: dict) -> Any:
        return {key: self.resolve(item) for key, item in value.items()}

    def string(self, value: Any) -> str:
        return str(value)

    def ref(self, name: str) -> Any:
        raise NotImplementedError

    def get_att(self, logical_id: str, attribute: str) -> Any:
        raise NotImplementedError

    def import_value(self, name: str) -> Any:
        raise NotImplementedError

    def unsupported(self, fn: str, value: dict) -> Any:
        raise TemplateError(f"{self.template.name}: {fn} is not supported by the resolver")

    @property
    def exports(self) -> dict[str, str]:
        """Export name -> output key of the template's exported outputs."""
        return {self.text(out["Export"]["Name"]): key for key, out in self.template.outputs.items() if "Export" in out}

    @property
    def imports(self) -> set[str]:
        """The export names the template imports."""
        return {self.text(arg) for arg in import_arguments(self.template.body)}


class ExportTable(dict):
    """Export name -> (the evaluator of the exporting template, the output key), shared by a folder's stacks."""

    def __init__(self, evaluators: Iterable[Evaluator] = ()):
        super().__init__()
        self._resolving: set[str] = set()
        for evaluator in evaluators:
            self.update({name: (evaluator, key) for name, key in evaluator.exports.items()})

    def value(self, name: str) -> Any:
        """The exported output's value, resolved by its own template's evaluator."""
        if name in self._resolving:
            raise TemplateError(f"export {name} depends on itself through Fn::ImportValue")
        evaluator, key = self[name]
        self._resolving.add(name)
        try:
            return evaluator.resolve(evaluator.template.outputs[key]["Value"])
        finally:
            self._resolving.discard(name)


class TemplateSet:
    """Every `*.yaml` template of a folder, each deployed as the stack `stack_name(stem, prefix)`."""

    def __init__(self, folder: Path, prefix: str = DEFAULT_PREFIX):
        self.folder = Path(folder)
        self.prefix = prefix
        self.templates = [Template.load(path) for path in sorted(self.folder.glob("*.yaml"))]

    def __iter__(self):
        return iter(self.templates)

    @property
    def stack_names(self) -> dict[str, str]:
        return {template.stem: stack_name(template.stem, self.prefix) for template in self.templates}

    def stacks(self, target: str, region: str, overrides: Mapping[str, Mapping[str, Any]] | None = None,
               placeholders: Mapping[str, Any] | None = None) -> list["Stack"]:
        """One Stack per template (parameter_values for `target`, `overrides` by stem), sharing one export table."""
        names, overrides = self.stack_names, overrides or {}
        stacks = [Stack(template, parameter_values(template, target, names, overrides.get(template.stem), placeholders),
                        names[template.stem], region=region) for template in self.templates]
        exports = ExportTable(stacks)
        for stack in stacks:
            stack.export_table = exports
        return stacks


def dependency_order(stacks: list[Evaluator]) -> list[Evaluator]:
    """Exporters before importers (ties by file name); a missing export or a cycle is a TemplateError."""
    exporter = {name: stack for stack in stacks for name in stack.exports}
    by_stem = {stack.template.stem: stack for stack in stacks}
    needs: dict[str, set[str]] = {}
    for stack in stacks:
        imports = stack.imports
        missing = sorted(name for name in imports if name not in exporter)
        if missing:
            raise TemplateError(f"{stack.template.name} imports {', '.join(missing)}, which no template in "
                                f"{stack.template.path.parent} exports")
        needs[stack.template.stem] = {exporter[name].template.stem for name in imports} - {stack.template.stem}
    order: list[Evaluator] = []
    while len(order) < len(stacks):
        ready = sorted(stem for stem in by_stem if by_stem[stem] not in order and needs[stem] <= {
            done.template.stem for done in order})
        if not ready:
            cycle = sorted(stem for stem in by_stem if by_stem[stem] not in order)
            raise TemplateError(f"the templates import each other's exports in a cycle: {', '.join(cycle)} "
                                "(move the shared resources into one template)")
        order.append(by_stem[ready[0]])
    return order


class Stack(Evaluator):
    """One template deployed as a stack: its parameter values and stack name, its intrinsic functions resolved
    to values (locally: the names the local stack uses; imports from the folder's export table)."""

    def __init__(self, template: Template, parameters: dict[str, Any], stack_name: str, *, region: str = "us-east-1",
                 account_id: str = LOCAL_ACCOUNT_ID, export_table: ExportTable | None = None,
                 physical_ids: Mapping[str, str] | None = None):
        self.template = template
        self.physical_ids = dict(physical_ids or {})  # logical id -> id the endpoint generated (Cognito)
        self.parameters = parameters
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.export_table = export_table if export_table is not None else ExportTable()

    @classmethod
    def load(cls, path: Path, settings: Settings, overrides: dict[str, Any] | None = None) -> "Stack":
        """One template alone, for the local target (parameter_values with LOCAL_PLACEHOLDERS); every parameter
        must have a value."""
        template = Template.load(path)
        stack = cls(template, parameter_values(template, "local", {template.stem: stack_name(template.stem)},
                                               overrides, LOCAL_PLACEHOLDERS),
                    stack_name(template.stem), region=settings.region)
        stack.require_values()
        return stack

    def require_values(self) -> None:
        for name, value in self.parameters.items():
            if value is None:
                raise TemplateError(f"{self.template.name}: parameter {name} has no default and no local value")

    @property
    def path(self) -> Path:
        return self.template.path

    @property
    def stem(self) -> str:
        return self.template.stem

    @property
    def body(self) -> dict:
        return self.template.body

    @property
    def resources(self) -> dict[str, dict]:
        return self.template.resources

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return self.template.of_type(resource_type)

    def props(self, logical_id: str) -> dict:
        return self.template.props(logical_id)

    # --- what Ref, GetAtt and an import are --------------------------------------------------------
    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name not in self.resources:
            raise TemplateError(f"{self.path.name}: Ref to unknown {name}")
        return self.physical_id(name)

    def physical_id(self, logical_id: str) -> str:
        """The name the resource gets locally (its Ref value): a generated id once recorded, else its name."""
        if logical_id in self.physical_ids:
            return self.physical_ids[logical_id]
        resource = self.resources[logical_id]
        name_property = {
            "AWS::S3::Bucket": "BucketName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::SecretsManager::Secret": "Name",
            "AWS::Events::Rule": "Name",
        }.get(resource["Type"])
        if name_property and name_property in resource.get("Properties", {}):
            return self.resolve(resource["Properties"][name_property])
        if resource["Type"] == "AWS::ApiGatewayV2::Api":
            return local_api_id(self.resolve(resource["Properties"].get("Name", logical_id)))
        return logical_id

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"{self.path.name}: GetAtt of unknown {logical_id}")
        if attribute != "Arn":
            return f"{logical_id}.{attribute}"
        resource_type = self.resources[logical_id]["Type"]
        name = self.physical_id(logical_id)
        arn = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{name}:*",
            "AWS::IAM::Role": f"arn:aws:iam::{self.account_id}:role/{name}",
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{self.region}:{self.account_id}:secret:{name}",
            "AWS::Events::Rule": f"arn:aws:events:{self.region}:{self.account_id}:rule/{name}",
        }.get(resource_type)
        return arn or f"arn:aws:{resource_type.split('::')[1].lower()}:{self.region}:{self.account_id}:{name}"

    def import_value(self, name: str) -> Any:
        if name not in self.export_table:
            raise MissingExportError(f"{self.path.name}: no export named {name} (deploy its stack first)")
        return self.export_table.value(name)

    def unsupported(self, fn: str, value: dict) -> Any:
        raise TemplateError(f"{self.path.name}: {fn} is not supported by the local resolver")

    # --- what the local stack needs ------------------------------------------------------
    def functions(self) -> dict[str, LocalFunction]:
        functions = {}
        for logical_id, resource in self.of_type("AWS::Lambda::Function").items():
            props = resource["Properties"]
            source = resource.get("Metadata", {}).get("clickstream", {}).get("Source")
            if not source:
                raise TemplateError(
                    f"{self.path.name}: {logical_id} needs Metadata.clickstream.Source (its code folder) to run locally"
                )
            env = self.resolve(props.get("Environment", {}).get("Variables", {}))
            functions[logical_id] = LocalFunction(
                logical_id=logical_id,
                name=self.physical_id(logical_id),
                handler=props["Handler"],
                source_dir=(self.path.parent.parent / source).resolve(),
                environment={key: str(value) for key, value in env.items()},
                timeout=int(props.get("Timeout", 3)),
                memory=int(props.get("MemorySize", 128)),
                runtime=props.get("Runtime", ""),
            )
        return functions

    def http_apis(self) -> list[HttpApi]:
        apis = []
        for logical_id, resource in self.of_type("AWS::ApiGatewayV2::Api").items():
            props = resource["Properties"]
            if props.get("ProtocolType") != "HTTP":
                continue
            routes = tuple(
                HttpRoute(key=self.resolve(route["Properties"]["RouteKey"]), function=self._route_function(route),
                          authorizer=self._route_authorizer(route))
                for route in self.of_type("AWS::ApiGatewayV2::Route").values()
                if route["Properties"].get("ApiId") == {"Ref": logical_id}
            )
            stages = [
                self.resolve(stage["Properties"]["StageName"])
                for stage in self.of_type("AWS::ApiGatewayV2::Stage").values()
                if stage["Properties"].get("ApiId") == {"Ref": logical_id}
            ]
            cors = self.resolve(props["CorsConfiguration"]) if "CorsConfiguration" in props else None
            apis.append(
                HttpApi(
                    logical_id=logical_id,
                    name=self.resolve(props.get("Name", logical_id)),
                    api_id=self.physical_id(logical_id),
                    stage=stages[0] if stages else "$default",
                    routes=routes,
                    cors=cors,
                )
            )
        return apis

    def _route_authorizer(self, route: dict) -> JwtAuthorizer | None:
        props = route["Properties"]
        kind = props.get("AuthorizationType", "NONE")
        if kind == "NONE":
            return None
        reference = props.get("AuthorizerId")
        logical_id = reference.get("Ref") if isinstance(reference, dict) else None
        if kind != "JWT" or logical_id not in self.of_type("AWS::ApiGatewayV2::Authorizer"):
            raise TemplateError(f"{self.path.name}: route {props.get('RouteKey')}: the local API runs JWT "
                                "authorizers only (AuthorizationType JWT, AuthorizerId !Ref <Authorizer>)")
        authorizer = self.props(logical_id)
        if authorizer.get("AuthorizerType") != "JWT":
            raise TemplateError(f"{self.path.name}: {logical_id} must be of AuthorizerType JWT")
        jwt_config = self.resolve(authorizer["JwtConfiguration"])
        return JwtAuthorizer(logical_id, tuple(self.resolve(authorizer["IdentitySource"])), jwt_config["Issuer"],
                             tuple(jwt_config.get("Audience") or ()))

    def _route_function(self, route: dict) -> str:
        target = self.resolve(route["Properties"].get("Target", ""))
        integration_id = target.removeprefix("integrations/")
        if integration_id not in self.resources:
            raise TemplateError(f"{self.path.name}: route target {target!r} is not an integration of this template")
        uri = self.props(integration_id).get("IntegrationUri")
        if isinstance(uri, dict) and "Fn::GetAtt" in uri:
            arg = uri["Fn::GetAtt"]
            return arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
        if isinstance(uri, dict) and "Ref" in uri:
            return uri["Ref"]
        raise TemplateError(f"{self.path.name}: {integration_id} IntegrationUri must be !GetAtt <Function>.Arn")

    def buckets(self) -> list[LocalBucket]:
        buckets = []
        for logical_id, resource in self.of_type("AWS::S3::Bucket").items():
            rules = (
                resource.get("Properties", {})
                .get("BucketEncryption", {})
                .get("ServerSideEncryptionConfiguration", [{}])
            )
            algorithm = rules[0].get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") if rules else None
            buckets.append(LocalBucket(logical_id, self.physical_id(logical_id), algorithm))
        return buckets

    def user_pools(self) -> list[LocalUserPool]:
        """Every Cognito user pool with its app clients, as CreateUserPool / CreateUserPoolClient parameters."""
        pools = []
        for logical_id, resource in self.of_type("AWS::Cognito::UserPool").items():
            settings = self.resolve(resource.get("Properties") or {})
            name = settings.pop("UserPoolName", logical_id)
            clients = tuple(
                LocalUserPoolClient(client_id, {key: value for key, value in self.resolve(client["Properties"]).items()
                                                if key != "UserPoolId"})
                for client_id, client in self.of_type("AWS::Cognito::UserPoolClient").items()
                if client["Properties"].get("UserPoolId") == {"Ref": logical_id}
            )
            pools.append(LocalUserPool(logical_id, name, {"PoolName": name, **settings}, clients))
        return pools

    def schedules(self) -> list[LocalSchedule]:
        """Every scheduled EventBridge rule and the function each of its targets invokes."""
        schedules = []
        for logical_id, resource in self.of_type("AWS::Events::Rule").items():
            props = resource.get("Properties", {})
            if "ScheduleExpression" not in props:
                continue  # an event-pattern rule: nothing to run on a clock
            for target in props.get("Targets", []):
                function = _function_of_arn(target.get("Arn"))
                if function is None or self.resources.get(function, {}).get("Type") != "AWS::Lambda::Function":
                    raise TemplateError(
                        f"{self.path.name}: {logical_id} target {target.get('Id')} must be !GetAtt <Function>.Arn "
                        "of a function in this template to run locally"
                    )
                raw_input = self.resolve(target["Input"]) if "Input" in target else None
                schedules.append(
                    LocalSchedule(
                        logical_id=logical_id,
                        name=self.physical_id(logical_id),
                        expression=str(self.resolve(props["ScheduleExpression"])).strip(),
                        function=function,
                        enabled=self.resolve(props.get("State", "ENABLED")) == "ENABLED",
                        input=json.loads(raw_input) if raw_input is not None else None,
                    )
                )
        return schedules

    def secrets(self) -> list[LocalSecret]:
        return [
            LocalSecret(
                logical_id=logical_id,
                name=self.physical_id(logical_id),
                local_value=resource.get("Metadata", {}).get("clickstream", {}).get("LocalValue"),
            )
            for logical_id, resource in self.of_type("AWS::SecretsManager::Secret").items()
        ]

    def outputs(self) -> dict[str, Any]:
        return {name: self.resolve(out["Value"]) for name, out in self.body.get("Outputs", {}).items()}


def _function_of_arn(value: Any) -> str | None:
    """The logical id in `!GetAtt F.Arn`, else None."""
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
        logical_id, attribute = get_att_arguments(value["Fn::GetAtt"])
        return logical_id if attribute == "Arn" else None
    return None


def local_api_id(name: str) -> str:
    """A stable 10-character id like API Gateway's, derived from the API's name."""
    return hashlib.sha1(name.encode()).hexdigest()[:10]


def load_stacks(settings: Settings, overrides: dict[str, dict] | None = None) -> list[Stack]:
    """Every template under cloudformation/, in name order, resolved for the local target (stacks
    `clickstream-<stem>`, LOCAL_PLACEHOLDERS for what only AWS has, `overrides` by stem); imports resolve
    through the folder's export table whatever the file names, as if the stacks were deployed in order."""
    stacks = TemplateSet(settings.templates).stacks("local", settings.region, overrides, LOCAL_PLACEHOLDERS)
    generated = recorded_physical_ids(settings)
    for stack in stacks:
        stack.physical_ids.update(generated.get(stack.stem, {}))
        stack.require_values()
    return stacks


def physical_ids_file(settings: Settings) -> Path:
    """Where the local stack records the ids its endpoint generated (a user pool's, an app client's), by stem."""
    return settings.home / "physical-ids.json"


def recorded_physical_ids(settings: Settings) -> dict[str, dict[str, str]]:
    """{template stem: {logical id: generated id}}; empty before the first `clickstream up`."""
    try:
        return json.loads(physical_ids_file(settings).read_text())
    except FileNotFoundError:
        return {}


def find_function(stacks: list[Stack], logical_id: str) -> LocalFunction:
    """The function `logical_id` of whichever template declares it."""
    for stack in stacks:
        if logical_id in stack.of_type("AWS::Lambda::Function"):
            return stack.functions()[logical_id]
    raise TemplateError(f"no template declares a function {logical_id}")

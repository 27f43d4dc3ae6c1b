"""Read the CloudFormation templates and resolve them for the local target, as `sam local` does.

The templates are the single source of truth for names, routes, environment, CORS and schedules;
everything local (buckets, the HTTP API's routes, each Lambda's handler and environment) is derived here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clickstream.settings import LOCAL_ACCOUNT_ID, LOCAL_NAME_SUFFIX, Settings

SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")

# Local values of parameters that only matter in AWS (network ids), by parameter type: a template declares
# them without a default (the deployer must choose), and the local stack, which has no VPC, gets these.
LOCAL_PLACEHOLDERS: dict[str, Any] = {
    "AWS::EC2::VPC::Id": "vpc-local",
    "AWS::EC2::Subnet::Id": "subnet-local",
    "AWS::EC2::SecurityGroup::Id": "sg-local",
    "List<AWS::EC2::Subnet::Id>": ["subnet-local"],
    "List<AWS::EC2::SecurityGroup::Id>": ["sg-local"],
}


class TemplateError(ValueError):
    """A template uses something the local resolver does not understand."""


class MissingExportError(TemplateError):
    """Fn::ImportValue of an export no template (yet) declares."""


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


@dataclass(frozen=True)
class HttpRoute:
    key: str  # "POST /clickstream", "ANY /{proxy+}" or "$default"
    function: str  # logical id of the integrated function

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


@dataclass
class Stack:
    """One template with its parameter values, resolved for the local target."""

    path: Path
    body: dict
    parameters: dict[str, Any]
    region: str = "us-east-1"
    account_id: str = LOCAL_ACCOUNT_ID
    exports: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, settings: Settings, overrides: dict[str, Any] | None = None) -> "Stack":
        """Parameter values: the template's Default; for parameters that only matter in AWS, the template's
        Metadata.clickstream.LocalParameters, else a placeholder by type (LOCAL_PLACEHOLDERS); NameSuffix is
        `local`; `overrides` win over all of these."""
        body = load_template(path)
        specs = body.get("Parameters", {})
        local_values = body.get("Metadata", {}).get("clickstream", {}).get("LocalParameters") or {}  # may be empty
        unknown = sorted(set(local_values) - set(specs))
        if unknown:
            raise TemplateError(f"{path.name}: Metadata.clickstream.LocalParameters names undeclared parameters {unknown}")
        parameters = {name: spec.get("Default") for name, spec in specs.items()}
        for name, spec in specs.items():
            if name in local_values:
                parameters[name] = local_values[name]
            elif parameters[name] is None and spec.get("Type") in LOCAL_PLACEHOLDERS:
                parameters[name] = copy.deepcopy(LOCAL_PLACEHOLDERS[spec["Type"]])
        if "NameSuffix" in parameters:
            parameters["NameSuffix"] = LOCAL_NAME_SUFFIX
        parameters.update(overrides or {})
        for name, spec in specs.items():
            value = parameters[name]
            if value is None:
                raise TemplateError(f"{path.name}: parameter {name} has no default and no local value")
            is_list = spec.get("Type") == "CommaDelimitedList" or str(spec.get("Type", "")).startswith("List<")
            if is_list and isinstance(value, str):
                parameters[name] = [item.strip() for item in value.split(",")]
        return cls(path=path, body=body, parameters=parameters, region=settings.region)

    @property
    def name(self) -> str:
        return f"clickstream-{self.path.stem}"

    @property
    def resources(self) -> dict[str, dict]:
        return self.body.get("Resources", {})

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {lid: res for lid, res in self.resources.items() if res.get("Type") == resource_type}

    def props(self, logical_id: str) -> dict:
        return self.resources[logical_id].get("Properties", {})

    # --- intrinsic functions -------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        """Resolve Ref, Fn::Sub, Fn::GetAtt, Fn::Join, Fn::Select, Fn::ImportValue to local values."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.get_att(logical_id, attribute)
            if fn == "Fn::Sub":
                return self.sub(arg)
            if fn == "Fn::Join":
                separator, items = arg
                return separator.join(str(item) for item in self.resolve(items))
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if fn == "Fn::ImportValue":
                export = self.resolve(arg)
                if export not in self.exports:
                    raise MissingExportError(f"{self.path.name}: no export named {export} (deploy its stack first)")
                return self.exports[export]
            if fn.startswith("Fn::") or fn == "Condition":
                raise TemplateError(f"{self.path.name}: {fn} is not supported by the local resolver")
        return {key: self.resolve(item) for key, item in value.items()}

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.name,
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
        """The name the resource gets locally (its Ref value)."""
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

    def sub(self, arg: Any) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return SUB_VARIABLE.sub(replace, template).replace("${!", "${")

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
                HttpRoute(key=self.resolve(route["Properties"]["RouteKey"]), function=self._route_function(route))
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
        arg = value["Fn::GetAtt"]
        logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
        return logical_id if attribute == "Arn" else None
    return None


def local_api_id(name: str) -> str:
    """A stable 10-character id like API Gateway's, derived from the API's name."""
    return hashlib.sha1(name.encode()).hexdigest()[:10]


def load_stacks(settings: Settings, overrides: dict[str, dict] | None = None) -> list[Stack]:
    """Every template under cloudformation/, in name order, resolved for the local target.

    The stacks share one export table, filled in dependency order whatever the file names (analytics.yaml
    imports what ingestion.yaml exports), as CloudFormation would if the stacks were deployed in that order.
    """
    overrides = overrides or {}
    stacks: list[Stack] = []
    exports: dict[str, str] = {}
    for path in sorted(settings.templates.glob("*.yaml")):
        stack = Stack.load(path, settings, overrides.get(path.stem))
        stack.exports = exports
        stacks.append(stack)
    pending = [(stack, out) for stack in stacks for out in stack.body.get("Outputs", {}).values() if "Export" in out]
    while pending:
        waiting: list[tuple[Stack, dict]] = []
        error: MissingExportError | None = None
        for stack, out in pending:
            try:
                exports[stack.resolve(out["Export"]["Name"])] = stack.resolve(out["Value"])
            except MissingExportError as missing:
                waiting.append((stack, out))
                error = error or missing
        if len(waiting) == len(pending):
            raise error  # an import nobody exports, or a cycle
        pending = waiting
    return stacks


def find_function(stacks: list[Stack], logical_id: str) -> LocalFunction:
    """The function `logical_id` of whichever template declares it."""
    for stack in stacks:
        if logical_id in stack.of_type("AWS::Lambda::Function"):
            return stack.functions()[logical_id]
    raise TemplateError(f"no template declares a function {logical_id}")

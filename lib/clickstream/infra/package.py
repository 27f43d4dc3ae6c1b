"""Build the code the templates deploy, reproducibly: one zip per Lambda function and the warehouse bundle.

What to build comes from the templates: every `AWS::Lambda::Function` whose `Code.S3Key` is a `!Ref` to a
parameter (IngestCodeKey, EtlCodeKey) gets a zip, and a `*CodeKey` parameter that an EC2 instance's user data
reads (DashboardCodeKey) gets the warehouse bundle that user data unpacks.

- A Lambda zip holds the function's `Metadata.clickstream.Source` folder at the zip root (handler.py), the
  `clickstream` package with its package data, and, for AWS, the function's third-party dependencies
  installed for its `Runtime` and `Architectures` (`pip install --target --platform manylinux_2_34_aarch64
  ... --platform manylinux2014_aarch64 --python-version 3.12 --implementation cp --only-binary=:all:
  --no-deps`: Amazon Linux 2023 has glibc 2.34, and pip does not widen a manylinux tag by itself). The dependency list is derived,
  not written by hand: the third-party modules the handler imports at module level, following the
  `clickstream` modules it imports transitively (`third_party_modules`), their distributions, and those
  distributions' requirements for the function's platform, each pinned to requirements.txt's version
  (`closure`). What the Lambda runtime provides (boto3, botocore, s3transfer, jmespath) is left out, and so
  is what only they need.
- The warehouse bundle (tar.gz) holds `wheels/` (a wheel of the clickstream package, built here, and the
  wheels of what the instance runs needs, derived the same way from the clickstream modules its user data
  runs and the dashboard's shiny/*.py, plus the packages the user data installs, for the instance's Python
  and architecture, all read from the template), `sql/` and `shiny/` of the project.
- Reproducible: files in sorted order, fixed timestamps (1980-01-01 in zips, 0 in the tar and gzip header),
  fixed permissions, no __pycache__, tests/ or console scripts; so the same sources give the same bytes, and
  the object key carries the content's hash (`lambdas/<function>-<sha256[:12]>.zip`): changed code gives a
  new key, which makes CloudFormation update the function, and unchanged code gives "no changes".
- Wheels are downloaded once into a wheel cache (`<home>/wheelhouse/<python>-<platform>/`, home is
  `.clickstream/`, ignored by git); a build first installs from the cache alone (`--no-index`) and downloads
  (`pip download`, needs PyPI) only when the cache lacks a wheel.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import clickstream

# What the AWS Lambda Python runtime already has (and our own code must not ship a second copy of).
LAMBDA_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath"})
# Import name -> the requirement to install for it, where the import alone does not say it (psycopg needs a
# libpq: the Lambda runtime and the instance have none, the binary extra ships one).
IMPORT_REQUIREMENTS = {"psycopg": "psycopg[binary]"}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
EXCLUDED_PARTS = {"__pycache__", "tests", ".pytest_cache", ".ipynb_checkpoints"}
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda's limit for a function's unzipped code
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
DEFAULT_PACKAGE_DATA = ["schemas/*.json", "schemas/*.yaml", "data/*.csv", "data/*.json"]
# Amazon Linux 2023 (the python3.12 Lambda runtime's OS and the warehouse instance's image) has glibc 2.34.
GLIBC_MINOR = 34
ARCHITECTURES = {"arm64": "aarch64", "x86_64": "x86_64"}
LAMBDA_KEY_PREFIX = "lambdas/"
DEFAULT_BUNDLE_FOLDERS = ("sql", "shiny")


class PackageError(RuntimeError):
    """The code cannot be built; the message says what is missing and how to get it."""


# --- where things are --------------------------------------------------------------------------------
def package_dir() -> Path:
    """The clickstream package that is installed (lib/clickstream in an editable install)."""
    return Path(clickstream.__file__).resolve().parent


def package_project() -> Path:
    """The repository the package comes from: its pyproject.toml and requirements.txt describe it."""
    return package_dir().parents[1]


# --- what the templates deploy -----------------------------------------------------------------------
@dataclass(frozen=True)
class CodeTarget:
    """One piece of code a template reads from CodeBucket through a `*CodeKey` parameter."""

    parameter: str  # IngestCodeKey
    kind: str  # "lambda" or "bundle"
    name: str  # ingest, etl, clickstream-dw-bundle
    templates: tuple[str, ...]  # template stems that declare the parameter
    source: Path | None = None  # a Lambda's handler folder
    python: str = "3.12"  # "3.12"
    machine: str = "aarch64"  # aarch64 or x86_64
    packages: tuple[str, ...] = ()  # bundle: what the user data installs from wheels/ (clickstream, shiny)
    modules: tuple[str, ...] = ()  # bundle: the clickstream modules the user data runs (clickstream.analytics.warehouse),
    # and those they import only when called (Metadata.clickstream.Modules)
    folders: tuple[str, ...] = DEFAULT_BUNDLE_FOLDERS  # bundle: project folders it carries (Metadata.clickstream.Bundle)
    key_prefix: str = LAMBDA_KEY_PREFIX

    @property
    def platform(self) -> str:
        return f"manylinux_2_{GLIBC_MINOR}_{self.machine}"

    @property
    def platforms(self) -> list[str]:
        """Every manylinux tag the target runs (pip does not widen a manylinux_2_X --platform by itself)."""
        return [f"manylinux_2_{minor}_{self.machine}" for minor in range(GLIBC_MINOR, 16, -1)] + [
            f"manylinux2014_{self.machine}"]


def code_targets(templates: Iterable[Any]) -> list[CodeTarget]:
    """The code targets of these templates (templates.Stack objects: .stem, .path, .body), by parameter."""
    found: dict[str, CodeTarget] = {}
    for template in templates:
        resources = template.body.get("Resources", {})
        for lid, res in resources.items():
            if res.get("Type") != "AWS::Lambda::Function":
                continue
            props = res.get("Properties", {})
            key = (props.get("Code") or {}).get("S3Key")
            if not (isinstance(key, dict) and isinstance(key.get("Ref"), str)):
                continue
            source = (res.get("Metadata") or {}).get("clickstream", {}).get("Source")
            if not source:
                raise PackageError(f"{template.path.name}: {lid} needs Metadata.clickstream.Source (its code folder) "
                                   "to be built")
            runtime = str(props.get("Runtime", ""))
            if not (match := re.fullmatch(r"python(3\.\d+)", runtime)):
                raise PackageError(f"{template.path.name}: {lid} has Runtime {runtime!r}; only pythonX.Y is built")
            arch = (props.get("Architectures") or ["x86_64"])[0]
            parameter = key["Ref"]
            previous = found.get(parameter)
            found[parameter] = CodeTarget(
                parameter, "lambda", source.rstrip("/").rsplit("/", 1)[-1],
                tuple(sorted({*(previous.templates if previous else ()), template.stem})),
                source=(template.path.parent.parent / source).resolve(), python=match.group(1),
                machine=ARCHITECTURES.get(arch, arch))
        for lid, res in resources.items():
            if res.get("Type") != "AWS::EC2::Instance":
                continue
            props = res.get("Properties", {})
            user_data = _text(props.get("UserData"))
            metadata = (res.get("Metadata") or {}).get("clickstream", {})
            folders = tuple(metadata.get("Bundle") or DEFAULT_BUNDLE_FOLDERS)
            image_parameter = (props.get("ImageId") or {}).get("Ref", "") if isinstance(props.get("ImageId"), dict) else ""
            images = (template.body.get("Metadata") or {}).get("clickstream", {}).get("ImageParameters") or {}
            for parameter in template.body.get("Parameters", {}):
                if not parameter.endswith("CodeKey") or "${" + parameter + "}" not in user_data:
                    continue
                python = re.search(r"python(3\.\d+) -m venv", user_data)
                installs = re.search(r"pip install --no-index --find-links wheels ([^\n]+)", user_data)
                image = str(images.get(image_parameter)
                            or template.body["Parameters"].get(image_parameter, {}).get("Default", ""))
                default = str(template.body["Parameters"][parameter].get("Default") or "")
                stem = default.rsplit("/", 1)[-1].split(".", 1)[0] or "bundle"
                found[parameter] = CodeTarget(
                    parameter, "bundle", stem, (template.stem,), python=python.group(1) if python else "3.11",
                    machine="x86_64" if "x86_64" in image else "aarch64",
                    packages=tuple(installs.group(1).split()) if installs else ("clickstream",),
                    modules=tuple(sorted({f"{package}.{m.strip()}" for package, group in re.findall(
                        r"from (clickstream(?:\.\w+)*) import ([\w, ]+)", user_data) for m in group.split(",")
                        if m.strip()} | set(re.findall(r"\b(clickstream(?:\.\w+)+)\b(?! import)", user_data))
                        | set(metadata.get("Modules", [])))),
                    key_prefix=default.rsplit("/", 1)[0] + "/" if "/" in default else "", folders=folders)
    return [found[name] for name in sorted(found)]


def _text(node: Any) -> str:
    """All strings inside a template node (the user data's Fn::Base64/Fn::Sub text)."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict):
        return "\n".join(_text(v) for v in node.values())
    if isinstance(node, list):
        return "\n".join(_text(v) for v in node)
    return ""


# --- which dependencies -----------------------------------------------------------------------------


def _module_imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module name, imported at module level?) for each import in a file (from-imports also as
    module.name, since `from clickstream import etl` imports a module)."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module, inner))
                found.extend((f"{child.module}.{alias.name}", inner) for alias in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return found


# Third-party modules a clickstream module imports inside a function that never runs in a function or an
# instance (contract.py's yaml: the docs and tests only); every other import, at module level or on first use
# inside a function (transform.py's user-agent parsers), is shipped.
NOT_AT_RUNTIME = {"clickstream.contract": {"yaml"}}


def third_party_modules(source: Path | None, package: Path | None = None, modules: Iterable[str] = ()
                        ) -> tuple[set[str], set[str]]:
    """The top-level third-party modules the handler folder imports, following the clickstream modules it
    imports at module level transitively; and the clickstream modules reached (for the report). A third-party
    import inside a function counts (a module may import on first use), unless NOT_AT_RUNTIME lists it."""
    package = package or package_dir()
    base = package.parent
    todo = sorted(p for p in source.rglob("*.py") if not _excluded(p.relative_to(source))) if source else []
    for module in modules:  # entry modules given by name (what the instance's user data runs)
        parts = module.split(".")
        todo += [c for c in (base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")) if c.exists()]
    seen: set[Path] = set()
    third: set[str] = set()
    reached: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        name = ".".join(path.relative_to(base).with_suffix("").parts).removesuffix(".__init__") \
            if path.is_relative_to(base) else path.stem
        for module, top in _module_imports(path):
            parts = module.split(".")
            if not top and (parts[0] == package.name or parts[0] in NOT_AT_RUNTIME.get(name, ())):
                continue
            if parts[0] == package.name:
                for i in range(1, len(parts) + 1):
                    for candidate in (base.joinpath(*parts[:i]).with_suffix(".py"), base.joinpath(*parts[:i], "__init__.py")):
                        if candidate.exists():
                            reached.add(".".join(parts[:i]))
                            todo.append(candidate)
            elif parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                third.add(parts[0])
    local = ({p.stem for p in source.glob("*.py")} | {p.name for p in source.iterdir() if (p / "__init__.py").exists()}
             if source else set())
    return third - local, reached


def pins(requirements: Path) -> dict[str, str]:
    """canonical name -> exact version from a requirements file of `name==version` lines."""
    if not requirements.exists():
        raise PackageError(f"{requirements} not found: the dependency versions are pinned there")
    found = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if match := re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)", line):
            found[canonicalize_name(match.group(1))] = match.group(3)
    return found


def marker_environment(python: str, machine: str) -> dict[str, str]:
    """PEP 508 marker values of Linux CPython `python` on `machine` (the Lambda runtime, the instance)."""
    return {"implementation_name": "cpython", "platform_python_implementation": "CPython", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": machine,
            "python_version": python, "python_full_version": f"{python}.0", "implementation_version": f"{python}.0",
            "platform_release": "", "platform_version": ""}


def _distribution_requires(name: str) -> list[str]:
    try:
        return importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        raise PackageError(f"{name} is not installed in this environment, so its dependencies cannot be derived: "
                           "install the pinned requirements (`make venv`)") from None


def closure(roots: Iterable[str], pinned: dict[str, str], python: str, machine: str,
            provided: Iterable[str] = (), requires: Callable[[str], list[str]] = _distribution_requires) -> list[str]:
    """`name==version` for the roots (requirement strings, extras allowed) and everything they require on that
    platform, each pinned to requirements.txt; `provided` distributions and what only they need are left out.
    A needed distribution requirements.txt does not pin is an error."""
    env = marker_environment(python, machine)
    skip = {canonicalize_name(name) for name in provided}
    wanted: dict[str, set[str]] = {}  # canonical name -> extras
    display: dict[str, str] = {}
    todo = [Requirement(root) for root in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in skip:
            continue
        extras = set(req.extras)
        if name in wanted and extras <= wanted[name]:
            continue
        new = name not in wanted
        wanted.setdefault(name, set()).update(extras)
        display.setdefault(name, req.name)
        if name not in pinned:
            raise PackageError(f"{req.name} is needed but requirements.txt pins no version of it: add it "
                               "(`pip freeze`), so every build installs the same code")
        for text in requires(display[name]):
            child = Requirement(text)
            if child.marker is None:
                todo.append(child)
                continue
            active = ([""] if new else []) + sorted(extras)
            if any(child.marker.evaluate({**env, "extra": extra}) for extra in active):
                todo.append(child)
    return [f"{name}=={pinned[name]}" for name in sorted(wanted)]


def lambda_requirements(target: CodeTarget, requirements: Path | None = None, package: Path | None = None) -> list[str]:
    """The pinned dependency list of one Lambda function (see the module docstring)."""
    assert target.source is not None
    modules, _ = third_party_modules(target.source, package)
    roots = module_requirements(modules, target.name)
    return closure(roots, pins(requirements or package_project() / "requirements.txt"), target.python, target.machine,
                   provided=LAMBDA_PROVIDED)


def module_requirements(modules: Iterable[str], who: str) -> list[str]:
    """The requirement (distribution, with the extra it needs) that provides each top-level module."""
    by_module = importlib.metadata.packages_distributions()
    roots = []
    for module in sorted(modules):
        if module in IMPORT_REQUIREMENTS:
            roots.append(IMPORT_REQUIREMENTS[module])
        elif module in by_module:
            roots.extend(by_module[module][:1])
        else:
            raise PackageError(f"{who} imports {module}, which no installed distribution provides")
    return roots


def project_metadata(pyproject: Path | None = None) -> dict:
    path = pyproject or package_project() / "pyproject.toml"
    if not path.exists():
        return {"project": {"name": "clickstream", "version": clickstream.__version__, "dependencies": []}}
    return tomllib.loads(path.read_text(encoding="utf-8"))


def bundle_requirements(target: CodeTarget, project: Path, requirements: Path | None = None
                        ) -> tuple[list[str], list[str], list[str]]:
    """What an instance's bundle runs needs: (the pinned wheels, the packages its user data installs that
    requirements.txt does not pin, the clickstream wheel's Requires-Dist).

    Derived like a Lambda's list, not from pyproject.toml's dependencies (those include the local stack's moto
    and pgserver, which have no use there and, for pgserver, no arm64 Linux wheel): the third-party modules that
    the clickstream modules the user data runs (`warehouse.migrate`, `clickstream.shop.storefront`) and the
    Python files of the bundle's folders (the dashboard's shiny/*.py) import at module level, and the other
    packages the user data installs (shiny, uvicorn), pinned to requirements.txt."""
    pinned = pins(requirements or package_project() / "requirements.txt")
    modules, _ = third_party_modules(None, modules=target.modules)
    for folder in target.folders:
        if (project / folder).is_dir():
            modules |= third_party_modules(project / folder)[0]
    requires = module_requirements(modules - set(target.packages), target.name)
    roots, missing = list(requires), []
    for name in target.packages:
        if canonicalize_name(name) == "clickstream":
            continue
        if canonicalize_name(name) in pinned:
            roots.append(name)
        else:
            missing.append(name)
    return closure(roots, pinned, target.python, target.machine), missing, requires


# --- pip -------------------------------------------------------------------------------------------
def wheelhouse_dir(home: Path, target: CodeTarget) -> Path:
    return home / "wheelhouse" / f"cp{target.python.replace('.', '')}-{target.platform}"


def _platform_options(target: CodeTarget) -> list[str]:
    return [*(option for tag in target.platforms for option in ("--platform", tag)), "--python-version", target.python, "--implementation", "cp",
            "--only-binary=:all:", "--no-deps"]


def pip_install_command(target: CodeTarget, into: Path, requirements_file: Path, wheelhouse: Path) -> list[str]:
    """Install the pinned list for the function's platform from the wheel cache alone (no network)."""
    return [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--target", str(into), *_platform_options(target), "--no-index", "--find-links", str(wheelhouse),
            "-r", str(requirements_file)]


def pip_download_command(target: CodeTarget, requirements_file: Path, wheelhouse: Path) -> list[str]:
    """Fill the wheel cache with the pinned list's wheels for the platform (needs PyPI)."""
    return [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--dest", str(wheelhouse), *_platform_options(target), "-r", str(requirements_file)]


Runner = Callable[[list[str]], subprocess.CompletedProcess]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def fetch_wheels(target: CodeTarget, requirements: Sequence[str], wheelhouse: Path, work: Path,
                 progress: Callable[[str], None], run: Runner = _run, install_into: Path | None = None) -> None:
    """Install (into `install_into`) or just check the pinned list from the wheel cache; download into the cache
    first when it lacks a wheel. Raises PackageError with pip's message when the download fails."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    listing = work / "requirements.txt"
    listing.write_text("\n".join(requirements) + "\n", encoding="utf-8")
    into = install_into or work / "check"
    if into.exists():
        shutil.rmtree(into)
    if run(pip_install_command(target, into, listing, wheelhouse)).returncode == 0:
        return
    progress(f"  downloading {len(requirements)} wheels for python{target.python} {target.platform} into {wheelhouse} "
             "(needs PyPI; later builds use this cache)")
    downloaded = run(pip_download_command(target, listing, wheelhouse))
    if downloaded.returncode != 0:
        errors = [line for line in downloaded.stderr.splitlines() if line.startswith("ERROR")] or [downloaded.stderr]
        raise PackageError(f"pip could not download the wheels for {target.name} ({target.platform}, Python "
                           f"{target.python}):\n" + "\n".join(errors)[-2000:])
    shutil.rmtree(into, ignore_errors=True)
    installed = run(pip_install_command(target, into, listing, wheelhouse))
    if installed.returncode != 0:
        raise PackageError(f"pip could not install the cached wheels for {target.name}:\n{installed.stderr.strip()[-2000:]}")


# --- reproducible archives ---------------------------------------------------------------------------
def _excluded(relative: Path, hidden: bool = False) -> bool:
    """Caches, tests and compiled files; hidden files too unless `hidden` (installed wheels' `.libs`)."""
    return bool(EXCLUDED_PARTS & set(relative.parts)) or relative.name.endswith(EXCLUDED_SUFFIXES) \
        or (not hidden and any(part.startswith(".") for part in relative.parts))


def package_files(package: Path | None = None, pyproject: Path | None = None) -> dict[str, Path]:
    """arcname -> file of the clickstream package: its modules and its package data (pyproject.toml's
    [tool.setuptools.package-data]), as a wheel of it would hold them."""
    package = package or package_dir()
    data = (project_metadata(pyproject).get("tool", {}).get("setuptools", {}).get("package-data", {})
            .get(package.name, DEFAULT_PACKAGE_DATA))
    files = {}
    for path in package.rglob("*"):
        relative = path.relative_to(package)
        if not path.is_file() or _excluded(relative):
            continue
        if path.suffix == ".py" or any(relative.match(pattern) for pattern in data):
            files[f"{package.name}/{relative.as_posix()}"] = path
    return files


def tree_files(folder: Path, prefix: str = "", installed: bool = False) -> dict[str, Path]:
    """arcname -> file for every file under folder (no caches or tests; for our own sources no hidden files; for
    an installed site no console scripts, bin/, which carry this machine's interpreter path)."""
    files = {}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if path.is_file() and not _excluded(relative, hidden=installed) and not (installed and relative.parts[0] == "bin"):
            files[prefix + relative.as_posix()] = path
    return files


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.external_attr = (0o100644 << 16)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    return info


def write_zip(path: Path, files: dict[str, Path | bytes]) -> None:
    """A zip whose bytes depend only on the names and contents: sorted entries, fixed time and modes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(files):
            content = files[name]
            archive.writestr(_zip_info(name), content if isinstance(content, bytes) else content.read_bytes())


def write_tar_gz(path: Path, files: dict[str, Path | bytes], folders: Iterable[str] = ()) -> None:
    """A tar.gz whose bytes depend only on the names and contents (sorted, mtime 0, root-owned, 0644/0755)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        names = sorted(set(files) | {f"{folder.rstrip('/')}/" for folder in folders}
                       | {"/".join(name.split("/")[:i]) + "/" for name in files for i in range(1, name.count("/") + 1)})
        for name in names:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                content = files[name]
                data = content if isinstance(content, bytes) else content.read_bytes()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    with open(path, "wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())


def _record_hash(data: bytes) -> str:
    return "sha256=" + urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_project_wheel(out_dir: Path, package: Path | None = None, pyproject: Path | None = None,
                        requires: Sequence[str] | None = None) -> Path:
    """A py3-none-any wheel of the clickstream package (modules, package data, Requires-Dist and the console
    script from pyproject.toml), written reproducibly without a build backend. `requires`: a deployment's own
    Requires-Dist instead of pyproject's (the warehouse bundle's; then without the console script, whose CLI
    needs the local stack's packages)."""
    project = project_metadata(pyproject)["project"]
    name, version = project["name"], project["version"]
    dist = f"{name.replace('-', '_')}-{version}"
    files: dict[str, bytes] = {arc: path.read_bytes() for arc, path in package_files(package, pyproject).items()}
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if project.get("description"):
        metadata.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        metadata.append(f"Requires-Python: {project['requires-python']}")
    metadata += [f"Requires-Dist: {dep}" for dep in (project.get("dependencies", []) if requires is None else requires)]
    files[f"{dist}.dist-info/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{dist}.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: clickstream.infra.package\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    scripts = project.get("scripts", {}) if requires is None else {}
    if scripts:
        files[f"{dist}.dist-info/entry_points.txt"] = ("[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in sorted(scripts.items()))).encode()
    record = f"{dist}.dist-info/RECORD"
    lines = [f"{arc},{_record_hash(data)},{len(data)}" for arc, data in sorted(files.items())] + [f"{record},,"]
    files[record] = ("\n".join(lines) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dist}-py3-none-any.whl"
    write_zip(path, dict(files))
    return path


# --- builds -------------------------------------------------------------------------------------------
@dataclass
class Artifact:
    """A built piece of code: where it is, its content-addressed key and what went into it."""

    parameter: str
    kind: str
    name: str
    path: Path
    key: str
    sha256: str
    size: int
    unpacked_size: int
    templates: tuple[str, ...] = ()
    requirements: list[str] = field(default_factory=list)
    with_dependencies: bool = True
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"parameter": self.parameter, "kind": self.kind, "name": self.name, "path": str(self.path),
                "key": self.key, "sha256": self.sha256, "size": self.size, "unpacked_size": self.unpacked_size,
                "templates": list(self.templates), "requirements": self.requirements,
                "with_dependencies": self.with_dependencies, "notes": self.notes}


def _finish(target: CodeTarget, built: Path, out_dir: Path, suffix: str, unpacked: int, **extra) -> Artifact:
    digest = hashlib.sha256(built.read_bytes()).hexdigest()
    final = out_dir / f"{target.name}-{digest[:12]}{suffix}"
    built.replace(final)
    return Artifact(target.parameter, target.kind, target.name, final, f"{target.key_prefix}{final.name}", digest,
                    final.stat().st_size, unpacked, target.templates, **extra)


def build_lambda(target: CodeTarget, out_dir: Path, *, home: Path, with_dependencies: bool = True,
                 requirements: Sequence[str] | None = None, wheelhouse: Path | None = None,
                 progress: Callable[[str], None] = lambda _: None, run: Runner = _run,
                 package: Path | None = None) -> Artifact:
    """The function's zip: handler folder at the root, the clickstream package, and (with_dependencies) the
    pinned third-party dependencies for its runtime and architecture. `requirements` overrides the derived list."""
    assert target.source is not None
    if not target.source.is_dir():
        raise PackageError(f"{target.parameter}: the function's code folder {target.source} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path | bytes] = {**package_files(package), **tree_files(target.source)}
    listing: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"clickstream-{target.name}-") as tmp:
        if with_dependencies:
            listing = list(requirements if requirements is not None else lambda_requirements(target, package=package))
            progress(f"{target.name}: {len(listing)} dependencies for python{target.python} {target.machine} "
                     f"({', '.join(listing)})")
            site = Path(tmp) / "site"
            fetch_wheels(target, listing, wheelhouse or wheelhouse_dir(home, target), Path(tmp), progress, run, site)
            if site.exists():
                files = {**tree_files(site, installed=True), **files}  # our own files win over a same-named installed one
        built = Path(tmp) / "build.zip"
        write_zip(built, files)
        unpacked = sum(len(c) if isinstance(c, bytes) else c.stat().st_size for c in files.values())
        if unpacked > LAMBDA_UNZIPPED_LIMIT:
            raise PackageError(f"{target.name}: {_mb(unpacked)} unzipped, over Lambda's limit of "
                               f"{_mb(LAMBDA_UNZIPPED_LIMIT)}: {', '.join(listing)}")
        return _finish(target, built, out_dir, ".zip", unpacked, requirements=listing,
                       with_dependencies=with_dependencies)


def build_bundle(target: CodeTarget, out_dir: Path, *, home: Path, project: Path, with_dependencies: bool = True,
                 requirements: Sequence[str] | None = None, wheelhouse: Path | None = None,
                 progress: Callable[[str], None] = lambda _: None, run: Runner = _run) -> Artifact:
    """The bundle an instance's user data unpacks: wheels/ (clickstream's own wheel and, with dependencies, the
    pinned wheels of its dependencies and of the packages the user data installs) and the project folders of
    target.folders (the warehouse: sql/ and shiny/; the storefront: frontend/ and sql/oltp/)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    listing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="clickstream-bundle-") as tmp:
        derived, missing, requires = bundle_requirements(target, project)
        wheels = {f"wheels/{p.name}": p for p in [build_project_wheel(Path(tmp) / "own", requires=requires)]}
        if with_dependencies:
            if requirements is None:
                listing = derived
                for name in missing:
                    notes.append(f"requirements.txt pins no {name}: the bundle has no {name} wheel, so the instance's "
                                 f"`pip install ... {' '.join(target.packages)}` fails until it is pinned")
            else:
                listing = list(requirements)
            cache = wheelhouse or wheelhouse_dir(home, target)
            progress(f"{target.name}: {len(listing)} wheels for python{target.python} {target.machine}")
            fetch_wheels(target, listing, cache, Path(tmp), progress, run)
            wanted = {canonicalize_name(r.split("==")[0]): r.split("==")[1] for r in listing}
            for wheel in sorted(cache.glob("*.whl")):
                parts = wheel.name.split("-")
                if wanted.get(canonicalize_name(parts[0])) == parts[1] and _compatible(wheel.name, target):
                    wheels[f"wheels/{wheel.name}"] = wheel
        else:
            notes.append("built without dependency wheels (local target: the instance runs nothing in moto)")
        files: dict[str, Path | bytes] = dict(wheels)
        for folder in target.folders:
            if (project / folder).is_dir():
                files.update(tree_files(project / folder, f"{folder}/"))
        built = Path(tmp) / "build.tar.gz"
        write_tar_gz(built, files, folders=["wheels", *target.folders])
        unpacked = sum(c.stat().st_size if isinstance(c, Path) else len(c) for c in files.values())
        return _finish(target, built, out_dir, ".tar.gz", unpacked, requirements=listing,
                       with_dependencies=with_dependencies, notes=notes)


def _compatible(wheel: str, target: CodeTarget) -> bool:
    """A cached wheel's tags fit the target's Python and platform (the cache folder is per target anyway)."""
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import parse_wheel_filename

    version = tuple(int(p) for p in target.python.split("."))
    platforms = target.platforms
    supported = set(cpython_tags(version, platforms=platforms)) | set(compatible_tags(version, platforms=platforms))
    return bool(set(parse_wheel_filename(wheel)[3]) & supported)


def build(targets: Iterable[CodeTarget], out_dir: Path, *, home: Path, project: Path, with_dependencies: bool = True,
          progress: Callable[[str], None] = lambda _: None, run: Runner = _run) -> dict[str, Artifact]:
    """Every target built: parameter -> Artifact."""
    artifacts = {}
    for target in targets:
        progress(f"building {target.name} ({target.kind}, python{target.python} {target.machine}"
                 f"{'' if with_dependencies else ', without third-party dependencies'})")
        if target.kind == "lambda":
            artifact = build_lambda(target, out_dir, home=home, with_dependencies=with_dependencies,
                                    progress=progress, run=run)
        else:
            artifact = build_bundle(target, out_dir, home=home, project=project, with_dependencies=with_dependencies,
                                    progress=progress, run=run)
        progress(f"  {artifact.key}: {_mb(artifact.size)} ({_mb(artifact.unpacked_size)} unpacked)")
        for note in artifact.notes:
            progress(f"  note: {note}")
        artifacts[target.parameter] = artifact
    return artifacts


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"

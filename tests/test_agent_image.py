"""AgentImage: an ECR repository that stays bounded, and an image built for the task's platform from inputs
that name the same build wherever the project is checked out, with one Prefect version throughout."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, Run, run_pulumi
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from components.agent_image import (
    DOCKERFILE,
    FLOW_REQUIREMENTS,
    IMAGE_REQUIREMENTS,
    KEEP_IMAGES,
    AgentImage,
    AgentImageArgs,
    build_spec,
    build_tag,
    context_files,
    pinned_version,
)

PREFECT = pinned_version("prefect")


@pytest.fixture(scope="module")
def image_run() -> Run:
    return run_pulumi(lambda: AgentImage("agent", AgentImageArgs(platform="linux/arm64")))


def test_repository_scans_on_push_keeps_tags_immutable_and_a_bounded_number_of_images(image_run: Run) -> None:
    repo = image_run.one("aws:ecr/repository:Repository").plain_inputs
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["imageTagMutability"] == "IMMUTABLE"
    (rule,) = json.loads(image_run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").plain_inputs["policy"])["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES}
    assert rule["action"] == {"type": "expire"}


def test_image_is_built_for_the_platform_on_the_pinned_prefect_and_pushed_to_the_repo(image_run: Run) -> None:
    image = image_run.one("docker:index/image:Image").plain_inputs
    repo = image_run.one("aws:ecr/repository:Repository").outputs
    # Resolved as pulumi-docker does, against the project directory (where `pulumi up` runs the program).
    assert (ROOT / image["build"]["context"]).resolve() == ROOT
    assert (ROOT / image["build"]["dockerfile"]).is_file()
    assert image["build"]["platform"] == "linux/arm64"
    assert image["build"]["args"] == {"PREFECT_VERSION": PREFECT}
    assert image["imageName"] == f"{repo['repositoryUrl']}:{build_tag(AgentImageArgs(platform='linux/arm64'))}"
    assert image["registry"]["server"] == repo["repositoryUrl"]
    assert image.get("skipPush") in (None, False)


def test_registry_password_is_kept_secret(image_run: Run) -> None:
    from pulumi.runtime import rpc

    registry = image_run.one("docker:index/image:Image").inputs["registry"]  # the password makes it all secret
    assert registry[rpc._special_sig_key] == rpc._special_secret_sig
    assert registry["value"]["password"] == "ecr-token"


def _image_inputs_from(checkout: Path) -> dict[str, object]:
    """The docker Image's inputs when the whole program runs from `checkout` (its own interpreter, cwd and imports)."""
    code = (
        "import json, sys; sys.path[:0] = ['.', 'tests']; from conftest import run_program; "
        "print(json.dumps(run_program().one('docker:index/image:Image').plain_inputs))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_two_checkout_locations_render_the_same_image_inputs(tmp_path: Path) -> None:
    """pulumi-docker diffs `context` and `dockerfile` as strings: CI and a laptop must not rebuild and roll."""
    ignore = shutil.ignore_patterns(".git", "venv", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache")
    checkouts = [tmp_path / "ci" / "prefect-fargate", tmp_path / "laptop" / "src" / "infra"]
    for checkout in checkouts:
        shutil.copytree(ROOT, checkout, ignore=ignore)
    first, second = (_image_inputs_from(checkout) for checkout in checkouts)
    assert first == second
    assert str(tmp_path) not in json.dumps(first)
    for checkout in checkouts:  # and each names files that exist there
        assert (checkout / first["build"]["dockerfile"]).is_file()  # type: ignore[index]


def test_docker_gets_only_the_requirement_files_the_dockerfile_copies() -> None:
    """Little is sent, and only these files (and the Dockerfile) make pulumi-docker's context hash change."""
    copied = {
        line.split()[1] for line in (ROOT / DOCKERFILE).read_text().splitlines() if line.startswith(("COPY ", "ADD "))
    }
    assert copied == {IMAGE_REQUIREMENTS, FLOW_REQUIREMENTS}
    # Docker also sends the Dockerfile and .dockerignore, whatever the patterns say.
    assert set(context_files()) == copied | {DOCKERFILE, ".dockerignore"}
    # pulumi-docker and Docker would prefer a <Dockerfile>.dockerignore (getIgnorePatterns); there is none.
    assert not (ROOT / f"{DOCKERFILE}.dockerignore").exists()


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def test_one_prefect_version_everywhere() -> None:
    """requirements.txt's pin is the only Prefect version: nothing else pins another, and prefect-aws accepts it."""
    version = Version(PREFECT)
    for path in [*ROOT.glob("requirements*.txt"), *ROOT.glob("*/requirements.txt")]:
        for requirement in _requirements(path):
            if canonicalize_name(requirement.name) == "prefect":
                assert version in requirement.specifier, f"{path.relative_to(ROOT)}: {requirement}"
    assert importlib.metadata.version("prefect") == PREFECT  # what the tests and `pulumi up` run
    prefect_aws = Requirement(f"prefect-aws=={pinned_version('prefect-aws', ROOT / IMAGE_REQUIREMENTS)}")
    assert importlib.metadata.version("prefect-aws") in prefect_aws.specifier
    (needs,) = [
        Requirement(text)
        for text in importlib.metadata.requires("prefect-aws") or []
        if canonicalize_name(Requirement(text).name) == "prefect" and Requirement(text).marker is None
    ]
    assert version in needs.specifier, f"prefect-aws {prefect_aws.specifier} needs {needs}"
    dockerfile = (ROOT / DOCKERFILE).read_text()
    assert "ARG PREFECT_VERSION\n" in dockerfile  # no default of its own: the program passes the pin
    assert "prefect-version" not in yaml.safe_load((ROOT / "flows" / "prefect.yaml").read_text())


# -- The tag: a hash of the build inputs -----------------------------------------------------------------------

ARGS = AgentImageArgs(platform="linux/amd64")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the files the image is built from, in the same layout (enough for `build_tag`)."""
    for name in [*context_files(), "README.md"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def test_unchanged_inputs_keep_the_tag_and_the_image_inputs(checkout: Path) -> None:
    """Same tag, and inputs equal to the last deployment's: pulumi-docker's Diff finds nothing, so it builds and
    pushes nothing (the repository's immutable tags are never pushed twice)."""
    assert build_tag(ARGS, checkout) == build_tag(ARGS, ROOT)
    first, second = (
        run_pulumi(lambda: AgentImage("agent", ARGS)).one("docker:index/image:Image").plain_inputs for _ in range(2)
    )
    assert first == second
    assert first["imageName"].endswith(f":{build_tag(ARGS)}")


@pytest.mark.parametrize(
    "change",
    ["flows/requirements.txt", "agent_image/requirements.txt", "agent_image/Dockerfile", ".dockerignore"],
)
def test_a_changed_file_docker_is_sent_gives_a_new_tag(checkout: Path, change: str) -> None:
    before = build_tag(ARGS, checkout)
    with (checkout / change).open("a") as file:
        file.write("\n# changed\n")
    assert build_tag(ARGS, checkout) != before


def test_a_mode_change_gives_a_new_tag(checkout: Path) -> None:
    """pulumi-docker's context hash includes each file's mode: so must the tag, or a chmod would rebuild and push
    an existing tag, which the immutable repository refuses."""
    before = build_tag(ARGS, checkout)
    (checkout / FLOW_REQUIREMENTS).chmod(0o755)
    assert build_tag(ARGS, checkout) != before


def test_a_new_file_docker_is_not_sent_keeps_the_tag(checkout: Path) -> None:
    before = build_tag(ARGS, checkout)
    (checkout / "README.md").write_text("edited")
    (checkout / "flows" / "new_flow.py").write_text("print('hi')")
    assert build_tag(ARGS, checkout) == before


@pytest.mark.parametrize(
    "other", [dataclasses.replace(ARGS, platform="linux/arm64"), dataclasses.replace(ARGS, prefect_version="3.9.2")]
)
def test_other_build_args_or_platform_give_a_new_tag(other: AgentImageArgs) -> None:
    assert build_spec(other) != build_spec(ARGS)
    assert build_tag(other) != build_tag(ARGS)

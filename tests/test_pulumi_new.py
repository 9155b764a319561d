"""`pulumi new <git-url>`: Pulumi.yaml's `template:` section prompts for what a ready stack needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ACCOUNT_ID, PROJECT, ROOT, WORKSPACE_ID, load_stack_config


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())


# Keys the program refuses unless they are stored as secrets, but that `config:` cannot mark `secret: true`
# (the CLI would then refuse a stack without them, and a self-hosted server may need none; see Pulumi.yaml):
# the template must still ask for them as secrets.
PROGRAM_SECRETS = {"prefectApiKey", "prefectApiAuthString"}
# What a Prefect Cloud user types at the three Cloud prompts.
CLOUD = {
    "prefectApiKey": "pnu_PromptedKey0123456789",
    "prefectAccountId": ACCOUNT_ID,
    "prefectWorkspaceId": WORKSPACE_ID,
}


def _own_keys(prompts: dict[str, Any]) -> dict[str, Any]:
    """The prompts for this project's keys, by unqualified key (others, such as aws:region, are the providers')."""
    return {key.split(":", 1)[1]: spec for key, spec in prompts.items() if key.startswith(f"{PROJECT}:")}


def test_template_describes_the_project_and_asks_for_the_region(project: dict[str, Any]) -> None:
    template = project["template"]
    assert template["description"] and template["displayName"]
    assert project["name"] == PROJECT  # the program reads its config under this namespace
    assert template["config"]["aws:region"]["default"]


def test_every_prompted_key_is_declared_and_as_secret(project: dict[str, Any]) -> None:
    declared, prompts = project["config"], _own_keys(project["template"]["config"])
    assert prompts
    assert set(prompts) <= set(declared), set(prompts) - set(declared)
    for key, spec in prompts.items():
        assert spec["description"], key
        assert spec.get("secret", False) == (declared[key].get("secret", False) or key in PROGRAM_SECRETS), key
        if "default" in spec:
            assert spec["default"] == declared[key]["default"], key


def test_every_required_and_every_secret_key_is_prompted(project: dict[str, Any]) -> None:
    """A stack made by `pulumi new` lacks nothing `pulumi up` needs, and its secrets are stored encrypted."""
    declared, prompts = project["config"], _own_keys(project["template"]["config"])
    required = {key for key, spec in declared.items() if "default" not in spec}
    secret = {key for key, spec in declared.items() if spec.get("secret")} | PROGRAM_SECRETS
    assert required | secret <= set(prompts), (required | secret) - set(prompts)
    assert prompts["prefectApiKey"]["secret"] is True


def test_answering_the_prompts_gives_a_valid_stack(project: dict[str, Any]) -> None:
    """The prompts' defaults plus a key and the Cloud ids (what a Cloud user types) pass validation."""
    prompts = _own_keys(project["template"]["config"])
    answers = {key: str(spec.get("default", "")) for key, spec in prompts.items()}
    answers.update(CLOUD)
    loaded = load_stack_config(answers, [key for key, spec in prompts.items() if spec.get("secret")])
    assert loaded.prefect_api_url.startswith("https://api.prefect.cloud/api/accounts/")


def _answers(project: dict[str, Any], **typed: str) -> tuple[dict[str, str], list[str]]:
    """What a user ends up with after `pulumi new`: each prompt's default unless typed, and the secret keys."""
    prompts = _own_keys(project["template"]["config"])
    answers = {key: str(spec.get("default", "")) for key, spec in prompts.items()}
    return {**answers, **typed}, [key for key, spec in prompts.items() if spec.get("secret")]


def test_the_key_prompt_says_when_to_leave_it_empty(project: dict[str, Any]) -> None:
    prompts = _own_keys(project["template"]["config"])
    assert "leave empty for a self-hosted server without authentication" in prompts["prefectApiKey"]["description"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in prompts["prefectApiAuthString"]["description"]


def test_the_prompts_serve_a_self_hosted_server_with_or_without_basic_auth(project: dict[str, Any]) -> None:
    url = "https://prefect.example.com/api"
    loaded = load_stack_config(*_answers(project, prefectApiUrl=url, prefectApiAuthString="admin:pass word"))
    assert loaded.prefect_api_url == url
    assert loaded.prefect_credential is not None and loaded.prefect_credential.config_key == "prefectApiAuthString"
    open_server = load_stack_config(*_answers(project, prefectApiUrl=url))  # both credential prompts left empty
    assert open_server.prefect_credential is None


def test_the_alert_email_prompt_reaches_the_alarms(project: dict[str, Any]) -> None:
    assert "alertEmail" in _own_keys(project["template"]["config"])
    answers, secrets = _answers(project, **CLOUD, alertEmail="oncall@example.com")
    assert load_stack_config(answers, secrets).alert_email == "oncall@example.com"


def test_the_prompts_ask_for_min_workers_with_the_readmes_headline_saving(project: dict[str, Any]) -> None:
    """minWorkers is the setting behind the README's headline: the prompt states the same two figures."""
    prompt = _own_keys(project["template"]["config"])["minWorkers"]["description"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    headline = re.search(
        r"\*\*What it costs:\*\* about (\$\d+) a month with one worker always on .*? pays about (\$[\d.]+) a "
        r"month with the worker scaled to zero between runs",
        readme,
    )
    assert headline, "README's headline moved: reword this test with it"
    assert f"always on (about {headline[1]} a month)" in prompt
    assert f"about {headline[2]} a month" in prompt
    answers, secrets = _answers(project, **CLOUD)
    assert load_stack_config(answers, secrets).scaling is None  # Enter: one worker always on, as the README says
    scaled = load_stack_config(*_answers(project, **CLOUD, minWorkers="0")).scaling
    assert scaled is not None and (scaled.min_workers, scaled.max_workers) == (0, 1)


def test_the_pool_prompt_is_what_a_second_stack_in_the_workspace_changes(project: dict[str, Any]) -> None:
    prompt = _own_keys(project["template"]["config"])["workPool"]
    assert "A second stack in the same Prefect workspace needs a name of its own" in prompt["description"]
    assert load_stack_config(*_answers(project, **CLOUD)).work_pool == prompt["default"]
    assert load_stack_config(*_answers(project, **CLOUD, workPool="fargate-pool-prod")).work_pool == "fargate-pool-prod"


# Prompts only one kind of Prefect needs: the other kind presses Enter (an empty default) and still gets a valid stack.
ONLY_FOR = {
    "prefectAccountId": "Prefect Cloud only (self-hosted: press Enter to skip)",
    "prefectWorkspaceId": "Prefect Cloud only (self-hosted: press Enter to skip)",
    "prefectApiUrl": "Self-hosted server only (Prefect Cloud: press Enter to skip)",
    "prefectApiAuthString": "Self-hosted server with basic auth only (Prefect Cloud: press Enter to skip)",
}


def test_the_prompts_one_kind_of_prefect_needs_say_so_first_and_are_skipped_with_enter(
    project: dict[str, Any],
) -> None:
    prompts = _own_keys(project["template"]["config"])
    for key, opening in ONLY_FOR.items():
        assert prompts[key]["description"].startswith(opening), key
        assert prompts[key]["default"] == "", key
    cloud = load_stack_config(*_answers(project, **CLOUD))  # the self-hosted prompts left at Enter
    assert cloud.prefect_api_url.startswith("https://api.prefect.cloud/api/accounts/")
    own = load_stack_config(*_answers(project, prefectApiUrl="https://prefect.example.com/api"))  # Cloud's at Enter
    assert own.prefect_api_url == "https://prefect.example.com/api"

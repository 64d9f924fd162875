"""manifest.yml against Slack's official JSON schema (slackapi/manifest-schema), validated offline."""

from __future__ import annotations

import copy
import json
import re
from typing import Any, cast

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from slack_ui.commands import CommandServices, FreshbooksCommand
from tests.support.paths import REPO

MANIFEST = REPO / "manifest.yml"
SCHEMA_DIR = REPO / "tests" / "support" / "slack_manifest_schema"  # vendored: see SOURCE.md there
# The entry schema `$ref`s the versioned files by these URLs; they are served from the local copies.
REMOTE_BASE = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/"
VERSIONED = ("manifest.schema.1.0.0.json", "manifest.schema.2.0.0.json")

BOT_EVENTS = {
    "app_home_opened",
    "app_uninstalled",
    "tokens_revoked",
    "member_joined_channel",
    "channel_archive",
    "channel_unarchive",
    "group_archive",
    "group_unarchive",
}


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    entry = json.loads((SCHEMA_DIR / "manifest.schema.json").read_text())
    # No `retrieve` hook: an unmapped remote $ref raises instead of touching the network.
    registry: Registry[Any] = Registry().with_resources(
        (REMOTE_BASE + name, Resource.from_contents(json.loads((SCHEMA_DIR / name).read_text()), DRAFT7))
        for name in VERSIONED
    )
    Draft7Validator.check_schema(entry)
    return Draft7Validator(entry, registry=registry)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(data, dict)
    return data


def _errors(validator: Draft7Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_manifest_matches_the_official_schema(validator: Draft7Validator, manifest: dict[str, Any]) -> None:
    assert _errors(validator, manifest) == []


def test_manifest_targets_schema_version_1(validator: Draft7Validator, manifest: dict[str, Any]) -> None:
    # Version 1 is the manifest format for classic HTTP Bolt apps; version 2 is for Slack's newer
    # platform apps. The v1 branch of the entry schema's oneOf must be the one that matched.
    assert manifest["_metadata"]["major_version"] == 1
    v1 = json.loads((SCHEMA_DIR / "manifest.schema.1.0.0.json").read_text())
    assert list(Draft7Validator(v1).iter_errors(manifest)) == []


def test_slash_command(manifest: dict[str, Any]) -> None:
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/freshbooks"
    assert command["should_escape"] is True
    assert command["url"].endswith("/slack/events")


def test_usage_hint_names_every_subcommand(manifest: dict[str, Any]) -> None:
    [command] = manifest["features"]["slash_commands"]
    hint = command["usage_hint"]
    # The table the dispatcher answers from; building it touches none of the services.
    subcommands = FreshbooksCommand(cast(CommandServices, None)).subcommands
    assert "help" in subcommands and "replay" in subcommands
    assert [s for s in subcommands if s not in re.findall(r"[a-z]+", hint)] == []
    limits = [
        length
        for name in VERSIONED
        for length in _max_lengths(json.loads((SCHEMA_DIR / name).read_text()), "usage_hint")
    ]
    assert limits and len(hint) <= min(limits)


def _max_lengths(schema: Any, key: str) -> list[int]:
    """Every maxLength the schema gives a property named `key`, wherever it is defined."""
    if isinstance(schema, list):
        return [n for item in schema for n in _max_lengths(item, key)]
    if not isinstance(schema, dict):
        return []
    found = (
        [schema[key]["maxLength"]] if isinstance(schema.get(key), dict) and "maxLength" in schema[key] else []
    )
    return found + [n for value in schema.values() for n in _max_lengths(value, key)]


def test_bot_events(manifest: dict[str, Any]) -> None:
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) >= BOT_EVENTS


def test_bot_scopes_do_not_include_chat_write_public(manifest: dict[str, Any]) -> None:
    # The bot joins public channels instead: reconciling in-doubt posts needs membership.
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert "chat:write.public" not in scopes
    assert {"channels:join", "channels:history", "groups:history"} <= set(scopes)


def test_all_slack_urls_share_one_host(manifest: dict[str, Any]) -> None:
    urls = [
        manifest["features"]["slash_commands"][0]["url"],
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
        *manifest["oauth_config"]["redirect_urls"],
    ]
    assert {url.split("/")[2] for url in urls} == {"example.com"}


@pytest.mark.parametrize(
    ("mutate", "expected_path"),
    [
        (lambda m: m["oauth_config"]["scopes"]["bot"].append(42), "oauth_config/scopes/bot/"),
        (lambda m: m.update(unknown_section={"x": 1}), "<root>"),
        (
            lambda m: m["features"]["slash_commands"][0].update(command="freshbooks"),
            "features/slash_commands/0",
        ),
        (lambda m: m["settings"]["interactivity"].pop("is_enabled"), "settings/interactivity"),
        (lambda m: m["display_information"].update(name="x" * 36), "display_information/name"),
    ],
    ids=[
        "scope-not-a-string",
        "unknown-top-level-key",
        "command-without-slash",
        "interactivity-no-flag",
        "long-name",
    ],
)
def test_invalid_manifests_fail_validation(
    validator: Draft7Validator, manifest: dict[str, Any], mutate: Any, expected_path: str
) -> None:
    broken = copy.deepcopy(manifest)
    mutate(broken)
    assert not validator.is_valid(broken)
    # The entry schema is a oneOf, so the top-level error only says "no branch matched"; the v2
    # branch's own errors name the offending field.
    v2 = json.loads((SCHEMA_DIR / "manifest.schema.2.0.0.json").read_text())
    paths = _errors(Draft7Validator(v2), broken)
    assert any(p.startswith(expected_path) for p in paths), paths

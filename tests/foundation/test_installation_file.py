"""The installations file: every mistake is one line naming the file, the key and the reason."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from mappings.installation import InstallationError
from mappings.installation_parse import parse_installations
from shopsync.shops import load_installations

DEMO = Path(__file__).resolve().parents[2] / "mappings" / "demo.toml"
EXAMPLE = Path(__file__).resolve().parents[2] / "mappings" / "example.toml"


def demo() -> dict[str, Any]:
    return tomllib.loads(DEMO.read_text())


def test_demo_file_loads_into_immutable_typed_objects() -> None:
    installations = load_installations(str(DEMO), env={})
    shop = installations.get("DEMO-STORE.myshopify.com")
    assert shop is not None and shop.api_version == "2024-10"
    main, vip = shop.sections
    assert main.attributes["email"] == "1001" and main.email is not None and main.sms is not None
    assert vip.conditions[1].op == "in" and vip.conditions[1].value == ("SE", "NO", "DK", "FI")
    with pytest.raises(TypeError):
        main.attributes["email"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        shop.domain = "x"  # type: ignore[misc]
    assert "sandbox-webhook-secret" not in repr(shop) and "sandbox-client-secret" not in repr(shop)


def test_environment_references_are_interpolated() -> None:
    env = {
        "SHOPIFY_CLIENT_ID": "app",
        "SHOPIFY_CLIENT_SECRET": "appsec",
        "APSIS_CLIENT_ID": "cid",
        "APSIS_CLIENT_SECRET": "csec",
    }
    shop = next(iter(load_installations(str(EXAMPLE), env=env).shops.values()))
    assert (shop.auth.mode, shop.auth.client_id, shop.apsis.client_id) == ("client_credentials", "app", "cid")
    assert shop.webhook_secret == "appsec"  # a Dev Dashboard app's secret signs its webhooks


def _mutate(path: list[str | int], value: Any = None, delete: bool = False) -> dict[str, Any]:
    document = copy.deepcopy(demo())
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


CASES: list[tuple[str, dict[str, Any], dict[str, str], str, str]] = [
    (
        "missing key",
        _mutate(["shop", 0, "access_token"], delete=True),
        {},
        "shop[0].access_token",
        "missing required key",
    ),
    ("unknown key", _mutate(["shop", 0, "acces_token"], "x"), {}, "shop[0].acces_token", "unknown key"),
    ("wrong type", _mutate(["shop", 0, "api_version"], 2024), {}, "shop[0].api_version", "must be a string"),
    (
        "missing environment variable",
        _mutate(["shop", 0, "access_token"], "${NOT_SET_ANYWHERE}"),
        {},
        "shop[0].access_token",
        "environment variable NOT_SET_ANYWHERE is not set",
    ),
    (
        "unknown condition operator",
        _mutate(["shop", 0, "section", 1, "conditions", 0, "op"], "like"),
        {},
        "shop[0].section[1].conditions[0].op",
        "unknown condition operator 'like'",
    ),
    ("old api version", _mutate(["shop", 0, "api_version"], "2019-10"), {}, "shop[0].api_version", "2020-07"),
    ("bad domain", _mutate(["shop", 0, "domain"], "not a domain"), {}, "shop[0].domain", "not a shop domain"),
    (
        "empty topic list",
        _mutate(["shop", 0, "section", 0, "consents", "email", "topics"], []),
        {},
        "shop[0].section[0].consents.email.topics",
        "non-empty list",
    ),
    (
        "in needs a list",
        _mutate(["shop", 0, "section", 1, "conditions", 1, "value"], "SE"),
        {},
        "value",
        "list",
    ),
    ("no sections", _mutate(["shop", 0, "section"], []), {}, "shop[0].section", "at least one"),
    ("no apsis table", _mutate(["shop", 0, "apsis"], delete=True), {}, "shop[0].apsis", "missing"),
    (
        "limits type",
        _mutate(["shop", 0, "limits"], {"apsis_requests_per_s": "fast"}),
        {},
        "apsis_requests_per_s",
        "number",
    ),
    (
        "profile burst",
        _mutate(["shop", 0, "limits"], {"apsis_profile_burst": 2.5}),
        {},
        "apsis_profile_burst",
        "whole number",
    ),
    (
        "orders topic",
        _mutate(["shop", 0, "orders"], {"event_topic": "orders/fulfilled"}),
        {},
        "event_topic",
        "one of",
    ),
]


@pytest.mark.parametrize(("name", "document", "env", "key", "reason"), CASES, ids=[c[0] for c in CASES])
def test_each_mistake_names_file_key_and_reason(
    name: str, document: dict[str, Any], env: dict[str, str], key: str, reason: str
) -> None:
    with pytest.raises(InstallationError) as caught:
        parse_installations(document, env, source="shops.toml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("shops.toml: ")
    assert key in message and reason in message, message


def test_duplicate_shop_domain() -> None:
    document = demo()
    document["shop"].append(copy.deepcopy(document["shop"][0]))
    with pytest.raises(InstallationError, match=r"shops.toml: shop\[1\]\.domain: duplicate shop domain"):
        parse_installations(document, {}, source="shops.toml")


def test_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InstallationError, match="no such file"):
        load_installations(str(tmp_path / "missing.toml"), env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[[shop]]\ndomain = \n")
    with pytest.raises(InstallationError) as caught:
        load_installations(str(bad), env={})
    assert str(caught.value).startswith(f"{bad}: (syntax): ") and "\n" not in str(caught.value)


def test_a_consent_list_still_loads_with_a_warning_naming_the_key(tmp_path: Path) -> None:
    document = _mutate(
        ["shop", 0, "section", 0, "consents", "email", "consent_list"], "com.apsis1.consent-lists.newsletter"
    )
    installations = parse_installations(document, {}, source="shops.toml")
    shop = installations.get("demo-store.myshopify.com")
    assert shop is not None
    email = shop.sections[0].email
    assert email is not None and email.topics == ("com.apsis1.topics.news", "com.apsis1.topics.offers")
    [warning] = installations.warnings
    assert warning.startswith("shops.toml: shop[0].section[0].consents.email.consent_list: ignored")
    assert "\n" not in warning

    # The same through the file reader, as the processes load it.
    path = tmp_path / "shops.toml"
    path.write_text(tomli_w.dumps(document))
    assert load_installations(str(path), env={}).warnings == (warning.replace("shops.toml", str(path), 1),)


@pytest.mark.parametrize("path", [DEMO, EXAMPLE], ids=["demo", "example"])
def test_the_shipped_files_load_without_a_warning(path: Path) -> None:
    names = ("SHOPIFY_ACCESS_TOKEN", "SHOPIFY_WEBHOOK_SECRET", "SHOPIFY_CLIENT_ID", "SHOPIFY_CLIENT_SECRET")
    env = dict.fromkeys((*names, "APSIS_CLIENT_ID", "APSIS_CLIENT_SECRET"), "x")
    installations = load_installations(str(path), env=env)
    assert installations.warnings == ()
    assert all(
        m.consent_list is None for s in installations.shops.values() for x in s.sections for m in x.consents
    )

"""The deployment files agree with the code: the Docker image holds every package the project
installs, and the Heroku manifest asks for what a Dev Dashboard app needs."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _packages() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}


def test_the_image_copies_every_installed_package() -> None:
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", (ROOT / "deploy" / "Dockerfile").read_text(), re.M))
    assert _packages() <= copied, f"deploy/Dockerfile lacks COPY of {sorted(_packages() - copied)}"


def test_heroku_manifest_names_what_the_example_installation_needs() -> None:
    env = json.loads((ROOT / "deploy" / "app.json").read_text())["env"]
    referenced = set(re.findall(r"\$\{(\w+)\}", (ROOT / "mappings" / "example.toml").read_text()))
    assert referenced <= set(env), f"deploy/app.json lacks {sorted(referenced - set(env))}"
    # The example mints its tokens: the key that encrypts them is made with the app.
    assert env["SHOPSYNC_TOKEN_KEY"].get("generator") == "secret"
    assert not env["SHOPIFY_ACCESS_TOKEN"].get("required")  # only an old custom app has one

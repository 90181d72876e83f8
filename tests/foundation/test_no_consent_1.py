"""No Consent 1.0 call is left: APSIS blocks those endpoints on migrated accounts, and every new
account is one. The service's code must not name them (the sandbox does, to refuse them)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "receiver", "worker", "mappings", "shopsync")
CONSENT_1 = re.compile(
    r"/audience/channels/|/consent-lists|/subscriptions\b|/evaluations\b|consent_list_discriminator"
)


def test_the_product_names_no_consent_1_endpoint() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if CONSENT_1.search(line)
    ]
    assert not found, "Consent 1.0 endpoints named:\n" + "\n".join(found)


def test_the_scan_finds_them() -> None:
    assert CONSENT_1.search('CONSENTS = "/audience/channels/{channel}/addresses/{address}/consents"')
    assert CONSENT_1.search('"/audience/sections/{section}/consent-lists"')
    assert not CONSENT_1.search('"/v2/audience/keyspaces/{ks}/profiles/{pk}/sections/{s}/consents"')

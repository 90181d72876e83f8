"""Suppressed addresses: no message goes to them, whatever the consents (APSIS One Consent 2.0).

Suppression belongs to an address (an email address or an E.164 phone number), not to a
profile; the v2 consents GET reports it for the profile's own addresses. Email addresses match
without regard to case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sandbox.apsis.definitions import channel_discriminator
from sandbox.apsis.values import address_channel, address_key, iso


class SuppressionMixin:
    """Suppression part of `Account`; set in code or over `/_sandbox/suppressions`."""

    clock: Callable[[], float]
    # address key -> (address as suppressed, channel discriminator, suppressed at)
    _suppressions: dict[str, tuple[str, str, float]]

    def _init_suppression(self) -> None:
        self._suppressions = {}

    def _reset_suppression(self) -> None:
        self._suppressions.clear()

    def suppress(self, address: str, channel: str | None = None) -> None:
        """Suppress an address; the channel defaults to the address's shape (email or E.164 phone).

        ValueError for an unknown channel, or when no channel is given and the address looks like
        neither. Suppressing again keeps the first time.
        """
        if channel is not None:
            resolved = channel_discriminator(channel)
        else:
            found = address_channel(address)
            if found is None:
                raise ValueError(
                    f"{address!r} is neither an email address nor an E.164 number: give the channel"
                )
            resolved = found
        self._suppressions.setdefault(address_key(address), (address, resolved, self.clock()))

    def unsuppress(self, address: str) -> None:
        """Lift the suppression of the address (nothing happens when there is none)."""
        self._suppressions.pop(address_key(address), None)

    def suppressed(self, address: str) -> bool:
        return address_key(address) in self._suppressions

    def suppression_list(self) -> list[dict[str, Any]]:
        """Every suppression, oldest first, in the shape the consents GET answers with."""
        entries = sorted(self._suppressions.values(), key=lambda e: e[2])
        return [_item(address, channel, at) for address, channel, at in entries]

    def _suppressions_among(self, addresses: Iterable[str | None]) -> list[dict[str, Any]]:
        """The suppressed ones of `addresses` (each once, as given), for the consents GET."""
        seen: set[str] = set()
        items = []
        for address in addresses:
            if not address:
                continue
            key = address_key(address)
            entry = self._suppressions.get(key)
            if key in seen or entry is None:
                continue
            seen.add(key)
            items.append(_item(address, entry[1], entry[2]))
        return items


def _item(address: str, channel: str, at: float) -> dict[str, Any]:
    return {"address": address, "channel_discriminator": channel, "suppressed_at": iso(at)}

"""One shop's Shopify app part read alone (domain, webhook `api_version`, `[shop.auth]`), with the
installations file's own rules (`mappings.installation_parse`): what `shopsync app-config` needs
at the setup step before the APSIS account and the sections are in the file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from mappings.installation import ShopAuth
from mappings.installation_checks import ParseContext, join_key
from mappings.installation_parse import api_version_of, domain_of, load_document, parse_auth


class _Lenient(Mapping[str, str]):
    """The environment, in which a `${NAME}` that is not set stands for itself: a secret that is
    not needed yet (the app's client secret) does not stop the read."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def __getitem__(self, name: str) -> str:
        return self.env[name] if name in self.env else "${" + name + "}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def parse_shop_app(
    text: str, domain: str, env: Mapping[str, str], source: str = "<installations>"
) -> tuple[str, str, ShopAuth]:
    """One shop's Shopify app part alone, checked as the whole file is: its domain, webhook
    `api_version` and `[shop.auth]`. What `shopsync app-config` needs at the setup step before the
    APSIS account and the sections are in the file (an unset `${NAME}` is left as it is)."""
    document = load_document(text, source)
    ctx = ParseContext(source, _Lenient(env))
    raw_shops = document.get("shop")
    if not isinstance(raw_shops, list) or not raw_shops:
        raise ctx.fail("shop", "at least one [[shop]] table is required")
    domains = []
    for index, raw in enumerate(raw_shops):
        key = f"shop[{index}]"
        table = ctx.table(raw, key)
        found = domain_of(ctx, table, key)
        domains.append(found)
        if found == domain.strip().lower():
            return (
                found,
                api_version_of(ctx, table, key),
                parse_auth(ctx, table.get("auth", {}), join_key(key, "auth")),
            )
    raise ctx.fail("shop", f"no shop {domain!r} (shops: {', '.join(sorted(domains))})")

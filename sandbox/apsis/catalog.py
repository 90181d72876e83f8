"""The account's definitions and their precompiled lookups: keyspaces, sections, versions, topics."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from sandbox.apsis.definitions import Definitions, Keyspace, Section, SectionIndex, index_section
from sandbox.apsis.problems import ApiError


class CatalogMixin:
    """Definitions part of `Account`: change them in code, the GETs answer from cached bodies."""

    clock: Callable[[], float]
    definitions: Definitions
    keyspaces: dict[str, Keyspace]
    sections: dict[str, SectionIndex]
    keyspaces_body: bytes
    sections_body: bytes

    def _init_catalog(self, definitions: Definitions | None) -> None:
        self.definitions = definitions if definitions is not None else Definitions()
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the lookups after changing `definitions` by hand (the helpers below call it)."""
        self.keyspaces = {k.discriminator: k for k in self.definitions.keyspaces}
        self.sections = {s.discriminator: index_section(s, orjson.dumps) for s in self.definitions.sections}
        self.keyspaces_body = orjson.dumps({"items": [k.to_json() for k in self.definitions.keyspaces]})
        self.sections_body = orjson.dumps({"items": [s.to_json() for s in self.definitions.sections]})

    def add_keyspace(
        self, discriminator: str, name: str = "", *, manage_subscriptions: bool = True
    ) -> Keyspace:
        keyspace = Keyspace(discriminator, name, manage_subscriptions)
        self.definitions.keyspaces.append(keyspace)
        self.reindex()
        return keyspace

    def add_section(self, section: Section) -> Section:
        self.definitions.sections = [
            s for s in self.definitions.sections if s.discriminator != section.discriminator
        ]
        self.definitions.sections.append(section)
        self.reindex()
        return section

    def section(self, discriminator: str) -> Section:
        return self.sections[discriminator].section

    def set_manage_subscriptions(self, keyspace: str, allowed: bool) -> None:
        """Whether consent may be managed through the keyspace (KeyError for an unknown one)."""
        self.keyspaces[keyspace].manage_subscriptions = allowed
        self.reindex()

    def deprecate_version(self, section: str, version_id: str, at: str = "2024-01-01T00:00:00Z") -> None:
        """Mark an attribute or event version deprecated (KeyError when it does not exist)."""
        definition = self.section(section)
        versions = [v for a in definition.attributes for v in a.versions]
        versions += [v for e in definition.events for v in e.versions]
        for version in versions:
            if version.id == version_id:
                version.deprecated_at = at
                self.reindex()
                return
        raise KeyError(f"no version {version_id} in section {section}")

    def _section_index(self, keyspace: str, section: str) -> SectionIndex:
        """The section's lookups for a profile route: 404 problem for an unknown keyspace or section."""
        if keyspace not in self.keyspaces:
            raise ApiError(404, f"keyspace {keyspace} does not exist")
        index = self.sections.get(section)
        if index is None:
            raise ApiError(404, f"section {section} does not exist")
        return index

"""A simulated APSIS One account (real HTTP on loopback) for tests, benchmarks and `shopsync sandbox`."""

from sandbox.apsis.account import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    KEYSPACE,
    SECTION,
    VIP_SECTION,
    Account,
    ConsentRecord,
    ProfileView,
    WriteRecord,
    default_account,
    default_definitions,
)
from sandbox.apsis.app import create_app
from sandbox.apsis.definitions import (
    EMAIL_CHANNEL,
    SMS_CHANNEL,
    Attribute,
    Definitions,
    Event,
    Folder,
    Keyspace,
    Section,
    Topic,
    Version,
)
from sandbox.apsis.faults import Faults
from sandbox.apsis.server import ApsisSandbox

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "EMAIL_CHANNEL",
    "KEYSPACE",
    "SECTION",
    "SMS_CHANNEL",
    "VIP_SECTION",
    "Account",
    "ApsisSandbox",
    "Attribute",
    "ConsentRecord",
    "Definitions",
    "Event",
    "Faults",
    "Folder",
    "Keyspace",
    "ProfileView",
    "Section",
    "Topic",
    "Version",
    "WriteRecord",
    "create_app",
    "default_account",
    "default_definitions",
]

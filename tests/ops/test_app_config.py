"""`shopsync app-config DOMAIN --address URL`: the shopify.app.toml fragment, read back with tomllib."""

from __future__ import annotations

import tomllib
from pathlib import Path

from core.keys import Keys
from tests.ops.helpers import cli_env, run_cli, sandbox_document, write_shops_file
from worker.install import needed_topics

DOMAIN = "demo-store.myshopify.com"
ADDRESS = "https://sync.example.com/webhooks/shopify"


def shops_file(tmp_path: Path, **auth: object) -> Path:
    document = sandbox_document("http://127.0.0.1:1", "http://127.0.0.1:2")
    if auth:
        document["shop"][0].pop("access_token")
        document["shop"][0]["auth"] = auth
    return write_shops_file(tmp_path / "shops.toml", document)


async def test_oauth_shop_fragment(tmp_path: Path, redis_url: str, keys: Keys) -> None:
    path = shops_file(
        tmp_path,
        mode="oauth",
        client_id="id",
        client_secret="secret",
        scopes=["read_customers", "read_all_orders"],
    )
    done = await run_cli(["app-config", DOMAIN, "--address", ADDRESS], cli_env(redis_url, keys, path))
    assert done.code == 0, done.stderr
    config = tomllib.loads(done.stdout)
    assert config["access_scopes"]["scopes"] == "read_customers,read_orders,read_products,read_all_orders"
    assert config["auth"]["redirect_urls"] == ["https://sync.example.com/auth/callback"]
    assert config["webhooks"]["api_version"] == "2024-10"
    subscriptions = config["webhooks"]["subscriptions"]
    topics = [s["topics"] for s in subscriptions if "topics" in s]
    assert topics == [[t] for t in needed_topics("2024-10")]
    assert {"customers/update", "orders/paid", "app/uninstalled", "customer.tags_added"} <= {
        t[0] for t in topics
    }
    compliance = [s for s in subscriptions if "compliance_topics" in s]
    assert compliance == [
        {"compliance_topics": ["customers/data_request", "customers/redact", "shop/redact"], "uri": ADDRESS}
    ]
    assert all(s["uri"] == ADDRESS for s in subscriptions)
    assert "secret" not in done.stdout


async def test_client_credentials_and_static_shops_have_no_redirect(
    tmp_path: Path, redis_url: str, keys: Keys
) -> None:
    for path in (
        shops_file(tmp_path, mode="client_credentials", client_id="id", client_secret="secret"),
        shops_file(tmp_path),
    ):
        done = await run_cli(["app-config", DOMAIN, "--address", ADDRESS], cli_env(redis_url, keys, path))
        assert done.code == 0, done.stderr
        config = tomllib.loads(done.stdout)
        assert "auth" not in config
        assert config["access_scopes"]["scopes"] == "read_customers,read_orders,read_products"


async def test_bad_usage(tmp_path: Path, redis_url: str, keys: Keys) -> None:
    env = cli_env(redis_url, keys, shops_file(tmp_path))
    for args, code in (
        (["app-config", DOMAIN], 2),
        (["app-config", DOMAIN, "--address", "sync.example.com"], 2),
        (["app-config", "other.myshopify.com", "--address", ADDRESS], 1),
    ):
        done = await run_cli(args, env)
        assert done.code == code, (args, done.stderr)
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_the_first_step_of_the_guide_is_enough(tmp_path: Path, redis_url: str, keys: Keys) -> None:
    """docs/CONFIGURATION.md's step 1.2 file (the shop and its app, nothing of APSIS yet)."""
    path = tmp_path / "first.toml"
    path.write_text(
        '[[shop]]\ndomain = "my-store.myshopify.com"\napi_version = "2026-10"\n'
        '[shop.auth]\nmode = "client_credentials"\nclient_id = "${SHOPIFY_CLIENT_ID}"\n'
        'client_secret = "${SHOPIFY_CLIENT_SECRET}"\n'
    )
    env = cli_env(redis_url, keys, path)
    for name in ("SHOPIFY_CLIENT_ID", "SHOPIFY_CLIENT_SECRET", "APSIS_CLIENT_ID", "APSIS_CLIENT_SECRET"):
        env.pop(name, None)
    done = await run_cli(["app-config", "my-store.myshopify.com", "--address", ADDRESS], env)
    assert done.code == 0, done.stderr
    config = tomllib.loads(done.stdout)
    assert config["webhooks"]["api_version"] == "2026-10" and "auth" not in config
    assert config["access_scopes"]["scopes"] == "read_customers,read_orders,read_products"


async def test_a_bad_app_part_is_one_line(tmp_path: Path, redis_url: str, keys: Keys) -> None:
    head = '[[shop]]\ndomain = "my-store.myshopify.com"\napi_version = "2026-10"\n'
    cases = [
        ('auth = "x"\n', "shop[0].auth: must be a table, not a string"),
        (
            '[shop.auth]\nmode = "oauth"\nclient_id = "a"\nclient_secret = "b"\nscopes = [""]\n',
            "shop[0].auth.scopes",
        ),
        ('[shop.auth]\nmode = "magic"\n', "shop[0].auth.mode: must be one of"),
    ]
    for n, (tail, expected) in enumerate(cases):
        path = tmp_path / f"bad{n}.toml"
        path.write_text(head + tail)
        done = await run_cli(
            ["app-config", "my-store.myshopify.com", "--address", ADDRESS], cli_env(redis_url, keys, path)
        )
        assert done.code == 1, done.stderr
        assert done.stderr.strip().splitlines() == [done.stderr.strip()] and expected in done.stderr, (
            done.stderr
        )


async def test_the_domain_may_come_from_the_environment(tmp_path: Path, redis_url: str, keys: Keys) -> None:
    path = tmp_path / "env.toml"
    path.write_text(
        '[[shop]]\ndomain = "${SHOP_DOMAIN}"\napi_version = "2026-10"\n'
        '[shop.auth]\nmode = "oauth"\nclient_id = "${SHOPIFY_CLIENT_ID}"\nclient_secret = "${SHOPIFY_CLIENT_SECRET}"\n'
    )
    env = cli_env(redis_url, keys, path, SHOP_DOMAIN="env-store.myshopify.com")
    done = await run_cli(["app-config", "env-store.myshopify.com", "--address", ADDRESS], env)
    assert done.code == 0, done.stderr
    assert tomllib.loads(done.stdout)["auth"]["redirect_urls"] == ["https://sync.example.com/auth/callback"]

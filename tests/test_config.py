"""Agent configuration: precedence, file formats, key spellings, and errors an operator can act on."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest

from dkron_pkg.config import KEYS, Config, ConfigError, load_config, reloader, split_host_port

# Every agent key of Dkron's config.go (reference §4.2), kebab-case.
DKRON_KEYS = [
    "server",
    "bootstrap-expect",
    "bootstrap",
    "data-dir",
    "node-name",
    "bind-addr",
    "advertise-addr",
    "http-addr",
    "rpc-port",
    "advertise-rpc-port",
    "profile",
    "join",
    "retry-join",
    "retry-max",
    "retry-interval",
    "raft-multiplier",
    "tags",
    "encrypt",
    "log-level",
    "datacenter",
    "region",
    "serf-reconnect-timeout",
    "ui",
    "mail-host",
    "mail-port",
    "mail-username",
    "mail-password",
    "mail-from",
    "mail-payload",
    "mail-subject-prefix",
    "pre-webhook-endpoint",
    "pre-webhook-payload",
    "pre-webhook-headers",
    "webhook-endpoint",
    "webhook-payload",
    "webhook-headers",
    "cronitor-endpoint",
    "statsd-addr",
    "dog-statsd-addr",
    "dog-statsd-tags",
    "enable-prometheus",
    "otel-endpoint",
    "disable-usage-stats",
    "devmode",
    "reconcileinterval",
]
OUR_KEYS = [
    "api-token",
    "max-body-bytes",
    "http-allowed-hosts",
    "cors-allowed-origins",
    "http-read-timeout",
    "http-header-timeout",
    "http-max-connections",
    "executions-per-job",
    "shutdown-timeout",
    "log-json",
    "notify-on",
    "crontab-sync",
    "crontab-cluster-wide",
    "rpc-tls-cert",
    "rpc-tls-key",
    "rpc-tls-ca",
    "encrypt-file",
    "dev-insecure",
    "dead-server-cleanup",
    "raft-max-voters",
]


def load(flags=None, env=None, path=None, search=()):
    return load_config(flags or {}, env or {}, path, search_dirs=list(search))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_every_dkron_key_and_ours_exists() -> None:
    assert sorted(s.kebab for s in KEYS.values()) == sorted(DKRON_KEYS + OUR_KEYS)


def test_defaults_are_dkrons_except_loopback_api_and_gossip() -> None:
    cfg = load()
    assert cfg.http_addr == "127.0.0.1:8080"
    assert cfg.http_listen() == ("127.0.0.1", 8080)
    assert cfg.bind_listen() == ("127.0.0.1", 8946)  # loopback until told otherwise
    assert cfg.node_name == socket.gethostname()
    assert (cfg.data_dir, cfg.rpc_port, cfg.profile, cfg.raft_multiplier) == (
        "dkron.data",
        6868,
        "lan",
        1,
    )
    assert (cfg.retry_interval, cfg.serf_reconnect_timeout, cfg.ui) == ("30s", "24h", True)
    assert (cfg.datacenter, cfg.region, cfg.mail_subject_prefix) == ("dc1", "global", "[Dkron]")
    assert (cfg.api_token, cfg.max_body_bytes, cfg.executions_per_job) == ("", 1048576, 100)
    assert cfg.seconds("shutdown_timeout") == 60.0
    assert (cfg.notify_on, cfg.crontab_sync, cfg.config_file) == ("always", [], "")


YAML_FILE = """\
server: true
rpc-port: 7001
region: from-file
log_level: debug
join: [a:1, b:2]
tags:
  tier: web
  rack: 7
"""
JSON_FILE = json.dumps(
    {
        "server": True,
        "rpc-port": 7001,
        "region": "from-file",
        "log_level": "debug",
        "join": ["a:1", "b:2"],
        "tags": {"tier": "web", "rack": 7},
    }
)
TOML_FILE = """\
server = true
rpc-port = 7001
region = "from-file"
log_level = "debug"
join = ["a:1", "b:2"]
[tags]
tier = "web"
rack = 7
"""


@pytest.mark.parametrize(
    ("name", "text"),
    [("dkron.yml", YAML_FILE), ("dkron.json", JSON_FILE), ("dkron.toml", TOML_FILE)],
)
def test_file_formats_read_the_same(tmp_path: Path, name: str, text: str) -> None:
    cfg = load(path=write(tmp_path, name, text))
    assert cfg.server is True
    assert cfg.rpc_port == 7001
    assert cfg.region == "from-file"
    assert cfg.log_level == "debug"
    assert cfg.join == ["a:1", "b:2"]
    assert cfg.tags == {"tier": "web", "rack": "7"}
    assert cfg.config_file == str(tmp_path / name)


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    path = write(tmp_path, "dkron.yml", YAML_FILE + "datacenter: file-dc\nretry-max: 3\n")
    env = {"DKRON_RPC_PORT": "7002", "DKRON_REGION": "from-env", "DKRON_RETRY_MAX": "4"}
    cfg = load({"rpc_port": "7003"}, env, path)
    assert cfg.rpc_port == 7003  # flag over env over file
    assert cfg.region == "from-env"  # env over file
    assert cfg.retry_max == 4
    assert cfg.datacenter == "file-dc"  # file over default
    assert cfg.server is True


def test_environment_lists_tags_and_booleans() -> None:
    env = {
        "DKRON_JOIN": "10.0.0.1, 10.0.0.2:8946",
        "DKRON_TAGS": "tier=web,zone=eu-1",
        "DKRON_SERVER": "1",
        "DKRON_UI": "false",
        "DKRON_WEBHOOK_HEADERS": "A: 1,B: 2",
        "DKRON_BOOTSTRAP_EXPECT": "3",
        "DKRON_ENCRYPT": "",  # empty counts as unset
    }
    cfg = load(env=env)
    assert cfg.join == ["10.0.0.1", "10.0.0.2:8946"]
    assert cfg.tags == {"tier": "web", "zone": "eu-1"}
    assert (cfg.server, cfg.ui, cfg.bootstrap_expect, cfg.encrypt) == (True, False, 3, "")
    assert cfg.webhook_headers == ["A: 1", "B: 2"]


def test_unknown_environment_variable_is_reported_not_fatal() -> None:
    cfg = load(env={"DKRON_RPC_PROT": "1", "OTHER": "x"})
    assert cfg.rpc_port == 6868
    assert len(cfg.warnings) == 1
    assert "DKRON_RPC_PROT" in cfg.warnings[0] and "DKRON_RPC_PORT" in cfg.warnings[0]


def test_flags_as_the_cli_gives_them() -> None:
    flags = {
        "server": "true",
        "ui": "false",
        "tags": ["tier=web", "zone=a,rack=2"],
        "join": ["a:1", "b:2,c:3"],
        "webhook_headers": ["Accept: a, b"],
        "raft-multiplier": "5",
    }
    cfg = load(flags)
    assert (cfg.server, cfg.ui, cfg.raft_multiplier) == (True, False, 5)
    assert cfg.tags == {"tier": "web", "zone": "a", "rack": "2"}
    assert cfg.join == ["a:1", "b:2", "c:3"]
    assert cfg.webhook_headers == ["Accept: a, b"]


def test_a_flag_list_replaces_the_file_list(tmp_path: Path) -> None:
    cfg = load({"join": ["z:9"]}, path=write(tmp_path, "dkron.yml", YAML_FILE))
    assert cfg.join == ["z:9"]


def test_kebab_and_snake_keys_and_empty_values(tmp_path: Path) -> None:
    text = "bootstrap_expect: 3\ndata-dir: /d\nNode-Name: n1\nencrypt:\nwebhook-url: x\n"
    cfg = load(path=write(tmp_path, "dkron.yml", text))
    assert (cfg.bootstrap_expect, cfg.data_dir, cfg.node_name, cfg.encrypt) == (3, "/d", "n1", "")
    assert any("webhook-url" in w and "ignored" in w for w in cfg.warnings)


def test_the_same_key_twice_in_one_file(tmp_path: Path) -> None:
    path = write(tmp_path, "dkron.json", '{"rpc_port": 1, "rpc-port": 2}')
    with pytest.raises(ConfigError, match=r'dkron.json: key "rpc-port" is given twice'):
        load(path=path)


def test_unknown_key_names_file_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "dkron.yml", "server: true\nboostrap-expect: 1\n")
    with pytest.raises(ConfigError) as info:
        load(path=path)
    assert str(info.value) == (
        f'config file {path}: unknown key "boostrap-expect" (did you mean "bootstrap-expect"?)'
    )


def test_unknown_key_without_a_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, "dkron.toml", "zzz = 1\n")
    with pytest.raises(ConfigError) as info:
        load(path=path)
    assert str(info.value) == f'config file {path}: unknown key "zzz"'


@pytest.mark.parametrize(
    ("source", "value", "message"),
    [
        ("file", "rpc-port: abc", 'key "rpc-port": expected an integer, got "abc"'),
        ("file", "rpc-port: 1.5", 'key "rpc-port": expected an integer, got 1.5'),
        ("file", "rpc-port: true", 'key "rpc-port": expected an integer, got true'),
        ("file", "server: yes", 'key "server": expected true or false, got "yes" (YAML 1.2'),
        ("file", "node-name: [a]", "key \"node-name\": expected a string, got ['a']"),
        ("file", "join: {a: 1}", 'key "join": expected a list of strings'),
        ("file", "tags: [web]", 'key "tags": tag "web" must be written key=value'),
        ("file", "tags: {a: [1]}", 'key "tags": tag "a" must have a plain value'),
        ("file", "retry-interval: 30", 'key "retry-interval": expected a duration such as'),
        ("env", ("DKRON_RPC_PORT", "x"), "environment variable DKRON_RPC_PORT: expected an int"),
        ("env", ("DKRON_SERVER", "maybe"), "DKRON_SERVER: expected true or false"),
        ("env", ("DKRON_TAGS", "a"), 'DKRON_TAGS: tag "a" must be written key=value'),
        ("flag", ("rpc_port", "x"), 'flag --rpc-port: expected an integer, got "x"'),
        ("flag", ("ui", "nope"), 'flag --ui: expected true or false, got "nope"'),
        ("flag", ("tags", ["x"]), 'flag --tag: tag "x" must be written key=value'),
    ],
)
def test_wrong_types_name_key_expectation_and_source(
    tmp_path: Path, source: str, value, message: str
) -> None:
    if source == "file":
        args = {"path": write(tmp_path, "dkron.yml", value + "\n")}
    elif source == "env":
        args = {"env": dict([value])}
    else:
        args = {"flags": dict([value])}
    with pytest.raises(ConfigError) as info:
        load(**args)
    assert message in str(info.value)
    if source == "file":
        assert str(info.value).startswith(f"config file {tmp_path / 'dkron.yml'}: ")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"raft_multiplier": "0"}, "flag --raft-multiplier: must be from 1 to 10, got 0"),
        ({"raft_multiplier": "11"}, "must be from 1 to 10, got 11"),
        ({"rpc_port": "70000"}, "flag --rpc-port: must be from 0 to 65535"),
        ({"bootstrap_expect": "-1"}, "must be at least 0"),
        ({"executions_per_job": "0"}, "must be at least 1"),
        ({"retry_interval": "soon"}, 'flag --retry-interval: invalid duration "soon"'),
        ({"retry_interval": "0s"}, "must be a positive duration"),
        ({"shutdown_timeout": "-5s"}, "must be a positive duration"),
        ({"http_addr": "localhost"}, 'flag --http-addr: bad address "localhost": missing port'),
        ({"http_addr": "http://x:80"}, "is a URL; give host:port"),
        ({"http_addr": "a b:80"}, "not a valid host name"),
        ({"http_addr": "::1:80"}, "write IPv6 addresses as [address]:port"),
        ({"http_addr": "1.2.3.4:99999"}, "port must be a number from 0 to 65535"),
        ({"bind_addr": "{{ GetPrivateIP }}"}, "go-sockaddr templates are not supported"),
        ({"statsd_addr": "statsd"}, "flag --statsd-addr: bad address"),
        ({"profile": "fast"}, 'flag --profile: must be one of lan, wan, local; got "fast"'),
        ({"log_level": "loud"}, "must be one of trace, debug, info"),
        ({"notify_on": "never"}, "must be one of always, failure, change"),
        ({"encrypt": "not base64!"}, "must be base64 text, as printed by 'dkron keygen'"),
        ({"encrypt": base64.b64encode(b"short").decode()}, "16, 24 or 32 bytes, got 5"),
        ({"webhook_headers": ["no colon"]}, 'header "no colon" must be written "Name: value"'),
        ({"node_name": " "}, "flag --node-name: must not be empty"),
        ({"cors_allowed_origins": ["ops.example"]}, 'flag --cors-allowed-origins: "ops.example"'),
        ({"cors_allowed_origins": ["https://a.example/x"]}, "write scheme://host[:port]"),
        ({"http_allowed_hosts": ["a.example:80"]}, "is not a host name (no port, no scheme)"),
        ({"http_read_timeout": "0s"}, "flag --http-read-timeout: must be a positive duration"),
        ({"http_max_connections": "0"}, "flag --http-max-connections: must be at least 1"),
        ({"bogus": "1"}, "unknown flag --bogus"),
    ],
)
def test_validation_names_the_source(flags: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(flags)
    assert message in str(info.value)


def test_http_limits_from_the_environment() -> None:
    cfg = load(
        env={
            "DKRON_HTTP_ALLOWED_HOSTS": "dkron.internal, 10.0.0.7",
            "DKRON_CORS_ALLOWED_ORIGINS": "https://ops.example,http://[::1]:3000",
            "DKRON_HTTP_READ_TIMEOUT": "5s",
            "DKRON_HTTP_MAX_CONNECTIONS": "16",
        }
    )
    assert cfg.http_allowed_hosts == ["dkron.internal", "10.0.0.7"]
    assert cfg.cors_allowed_origins == ["https://ops.example", "http://[::1]:3000"]
    assert (cfg.http_read_timeout, cfg.http_header_timeout) == ("5s", "10s")
    assert cfg.http_max_connections == 16


def test_validation_error_from_the_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "dkron.yml", "raft-multiplier: 12\n")
    with pytest.raises(ConfigError) as info:
        load(path=path)
    assert str(info.value) == (
        f'config file {path}: key "raft-multiplier": must be from 1 to 10, got 12'
    )


def test_valid_edge_values() -> None:
    key = base64.b64encode(bytes(32)).decode()
    cfg = load(
        {
            "raft_multiplier": "10",
            "http_addr": ":8080",
            "bind_addr": "[::1]",
            "advertise_addr": "node.example:9000",
            "encrypt": key,
            "log_level": "WARN",
            "profile": "Local",
        }
    )
    assert cfg.raft_multiplier == 10
    assert cfg.http_listen() == ("0.0.0.0", 8080)  # ":8080" is every interface, as in Dkron
    assert cfg.bind_listen() == ("::1", 8946)
    assert (cfg.log_level, cfg.profile) == ("warn", "local")


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("127.0.0.1:8080", None, ("127.0.0.1", 8080)),
        (":0", None, ("", 0)),
        ("[::]:80", None, ("::", 80)),
        ("host-1.example", 8946, ("host-1.example", 8946)),
        ("fe80::1", 8946, ("fe80::1", 8946)),
    ],
)
def test_split_host_port(text: str, default: int | None, expected: tuple[str, int]) -> None:
    assert split_host_port(text, default) == expected


def test_search_order_and_ambiguity(tmp_path: Path) -> None:
    etc, home = tmp_path / "etc", tmp_path / "home"
    (home / ".dkron").mkdir(parents=True)
    etc.mkdir()
    write(home / ".dkron", "dkron.yml", "region: home\n")
    write(home / ".dkron", "dkron.json", '{"region": "home-json"}')
    cfg = load_config({}, {"HOME": str(home)}, None, search_dirs=[str(etc), str(home / ".dkron")])
    assert cfg.region == "home"
    assert cfg.config_file == str(home / ".dkron" / "dkron.yml")
    assert any("dkron.json ignored" in w for w in cfg.warnings)
    write(etc, "dkron.toml", 'region = "etc"\n')
    cfg = load_config({}, {"HOME": str(home)}, None, search_dirs=[str(etc), str(home / ".dkron")])
    assert cfg.region == "etc"


def test_default_search_uses_home_dot_dkron(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".dkron").mkdir()
    write(tmp_path / ".dkron", "dkron.yml", "datacenter: from-home\n")
    monkeypatch.chdir(tmp_path)  # ./config does not exist here
    cfg = load_config({}, {"HOME": str(tmp_path)}, None)
    if cfg.config_file.startswith("/etc/dkron"):
        pytest.fail("a config file in /etc/dkron on this machine shadows the test")
    assert cfg.datacenter == "from-home"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("dkron.yml", "a: [1,\n", ":1: '[' is never closed"),
        ("dkron.yml", "- a\n- b\n", "the top level must be a mapping"),
        ("dkron.json", '{"server": true,\n "x": }', ":2: invalid JSON"),
        ("dkron.toml", "server = \n", "invalid TOML"),
        ("dkron.ini", "server=1", "unsupported extension"),
        ("dkron.yml", b"server: \xff\n", "not UTF-8"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        load(path=str(path))
    assert str(info.value).startswith(f"config file {path}")
    assert message in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(path=str(tmp_path / "nope.yml"))


def test_reloader_reads_the_file_again(tmp_path: Path) -> None:
    path = write(tmp_path, "dkron.yml", "tags: {tier: a}\n")
    flags = {"rpc_port": "7000"}
    reload = reloader(flags, {}, path)
    flags["rpc_port"] = "1"  # the reloader keeps the flags the agent started with
    first = reload()
    write(tmp_path, "dkron.yml", "tags: {tier: b}\n")
    second = reload()
    assert (first.tags, second.tags) == ({"tier": "a"}, {"tier": "b"})
    assert second.rpc_port == 7000
    write(tmp_path, "dkron.yml", "tags: {tier: b}\nnope: 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        reload()


def test_redacted_hides_secrets() -> None:
    cfg = Config(api_token="t0k", mail_password="pw")
    shown = cfg.redacted()
    assert shown["api-token"] == "<redacted>" and shown["mail-password"] == "<redacted>"
    assert shown["encrypt"] == "" and shown["http-addr"] == "127.0.0.1:8080"
    assert "t0k" not in json.dumps(shown)

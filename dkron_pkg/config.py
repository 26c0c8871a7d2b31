"""Agent configuration: command-line flags > DKRON_* environment > config file > defaults.

One entry point, `load_config`, builds a validated `Config` from the three sources; the agent
calls it again (through `reloader`) on SIGHUP. Keys are Dkron's (reference §4.2) plus a few of
our own; a config file may spell them `kebab-case` or `snake_case`. Anything unknown or of the
wrong type is a `ConfigError` that names the key, what was expected and where it came from.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import json
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from dkron_pkg import miniyaml
from dkron_pkg.cluster_key import read_key_file
from dkron_pkg.durations import parse_duration
from dkron_pkg.node_tags import reserved_tag_problem

CONFIG_NAMES = ("dkron.yml", "dkron.yaml", "dkron.json", "dkron.toml")
ENV_PREFIX = "DKRON_"
PROFILES = ("lan", "wan", "local")
LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic")
NOTIFY_ON = ("always", "failure", "change")
DEFAULT_BIND_PORT = 8946
# Keys Dkron still parses but that do nothing; accepted with a warning instead of an error.
IGNORED_KEYS = {"webhook_url": "deprecated in Dkron and ignored; use webhook-endpoint"}
_SECRET_KEYS = ("api_token", "encrypt", "mail_password")


class ConfigError(ValueError):
    """A configuration problem, worded for the operator (key, expectation and source)."""


def _help(text: str, flag: bool = True) -> dict[str, Any]:
    return {"help": text, "flag": flag}


def _list() -> list[str]:
    return []


def _dict() -> dict[str, str]:
    return {}


@dataclass
class Config:
    """Everything an agent needs to start; one field per configuration key."""

    server: bool = field(default=False, metadata=_help("run as a server (Raft voter, API, UI)"))
    bootstrap_expect: int = field(
        default=0, metadata=_help("servers to wait for before bootstrapping (1: single node)")
    )
    bootstrap: bool = field(default=False, metadata=_help("manual bootstrap mode", flag=False))
    data_dir: str = field(default="dkron.data", metadata=_help("folder for the store and Raft"))
    node_name: str = field(
        default_factory=socket.gethostname, metadata=_help("unique node name (default: hostname)")
    )
    bind_addr: str = field(
        default="127.0.0.1:8946",
        metadata=_help(
            "gossip and RPC address host[:port] (port default 8946); loopback unless set, "
            "so give a reachable address to form a cluster"
        ),
    )
    advertise_addr: str = field(
        default="", metadata=_help("address announced to other nodes (default: bind address)")
    )
    http_addr: str = field(
        default="127.0.0.1:8080",
        metadata=_help("HTTP API and UI address; ':8080' listens on every interface"),
    )
    rpc_port: int = field(default=6868, metadata=_help("port for Raft and node RPC"))
    advertise_rpc_port: int = field(
        default=0, metadata=_help("RPC port announced to others (0: same as --rpc-port)")
    )
    profile: str = field(default="lan", metadata=_help("gossip timing profile: lan, wan, local"))
    join: list[str] = field(default_factory=_list, metadata=_help("address to join at start"))
    retry_join: list[str] = field(
        default_factory=_list, metadata=_help("address to join, retrying until it works")
    )
    retry_max: int = field(default=0, metadata=_help("join attempts before giving up (0: forever)"))
    retry_interval: str = field(default="30s", metadata=_help("time between join attempts"))
    raft_multiplier: int = field(
        default=1,
        metadata=_help("scale Raft timeouts: 1 = 0.5-1 s elections, 100 ms heartbeats; up to 10"),
    )
    tags: dict[str, str] = field(default_factory=_dict, metadata=_help("node tag key=value"))
    encrypt: str = field(
        default="",
        metadata=_help(
            "cluster key from 'dkron keygen' (base64); without one a lone server makes one "
            "and keeps it in <data-dir>/cluster.key"
        ),
    )
    log_level: str = field(default="info", metadata=_help("debug, info, warn, error, fatal"))
    datacenter: str = field(default="dc1", metadata=_help("datacenter name (tag 'dc')"))
    region: str = field(default="global", metadata=_help("region name (tag 'region')"))
    serf_reconnect_timeout: str = field(
        default="24h", metadata=_help("how long failed nodes are kept before being reaped")
    )
    ui: bool = field(default=True, metadata=_help("serve the web UI"))
    mail_host: str = field(default="", metadata=_help("SMTP host for notifications"))
    mail_port: int = field(default=0, metadata=_help("SMTP port"))
    mail_username: str = field(default="", metadata=_help("SMTP user"))
    mail_password: str = field(default="", metadata=_help("SMTP password"))
    mail_from: str = field(default="", metadata=_help("sender address of notification mails"))
    mail_payload: str = field(default="", metadata=_help("template of the mail body"))
    mail_subject_prefix: str = field(default="[Dkron]", metadata=_help("mail subject prefix"))
    pre_webhook_endpoint: str = field(default="", metadata=_help("URL called when a run starts"))
    pre_webhook_payload: str = field(default="", metadata=_help("template of the pre-webhook body"))
    pre_webhook_headers: list[str] = field(
        default_factory=_list, metadata=_help("pre-webhook header 'Name: value'")
    )
    webhook_endpoint: str = field(default="", metadata=_help("URL called when a run ends"))
    webhook_payload: str = field(default="", metadata=_help("template of the webhook body"))
    webhook_headers: list[str] = field(
        default_factory=_list, metadata=_help("webhook header 'Name: value'")
    )
    cronitor_endpoint: str = field(default="", metadata=_help("Cronitor telemetry URL"))
    statsd_addr: str = field(default="", metadata=_help("statsd host:port (UDP)"))
    dog_statsd_addr: str = field(default="", metadata=_help("DogStatsD host:port (UDP)"))
    dog_statsd_tags: list[str] = field(default_factory=_list, metadata=_help("DogStatsD tag"))
    enable_prometheus: bool = field(default=False, metadata=_help("serve /metrics"))
    otel_endpoint: str = field(default="", metadata=_help("OpenTelemetry endpoint (accepted)"))
    disable_usage_stats: bool = field(
        default=False, metadata=_help("accepted for compatibility; no usage stats are ever sent")
    )
    devmode: bool = field(default=False, metadata=_help("development mode", flag=False))
    reconcileinterval: str = field(
        default="60s", metadata=_help("membership reconcile interval", flag=False)
    )
    # -- beyond Dkron --------------------------------------------------------------------------
    dead_server_cleanup: str = field(
        default="5m",
        metadata=_help(
            "remove a Raft voter failed in gossip this long, if the others still make a "
            "quorum (0: never; a server that left is removed at once)"
        ),
    )
    raft_max_voters: int = field(
        default=5,
        metadata=_help(
            "voters of the Raft group (1-9); further servers replicate as non-voters and "
            "become voters when a voter goes"
        ),
    )
    api_token: str = field(default="", metadata=_help("when set, every API call must carry it"))
    max_body_bytes: int = field(default=1048576, metadata=_help("largest API request body"))
    http_allowed_hosts: list[str] = field(
        default_factory=_list,
        metadata=_help(
            "host name the API answers to besides IP addresses, localhost, this machine's name "
            "and the configured addresses; '*' turns the Host check off"
        ),
    )
    cors_allowed_origins: list[str] = field(
        default_factory=_list,
        metadata=_help(
            "origin (scheme://host[:port]) whose web pages may call the API; "
            "'*' allows every origin"
        ),
    )
    http_read_timeout: str = field(
        default="30s",
        metadata=_help("time a request may take to arrive, and an idle connection stays open"),
    )
    http_header_timeout: str = field(
        default="10s", metadata=_help("time a request's line and headers may take to arrive")
    )
    http_max_connections: int = field(
        default=128, metadata=_help("HTTP connections served at once; more are answered 503")
    )
    executions_per_job: int = field(default=100, metadata=_help("executions kept per job"))
    shutdown_timeout: str = field(
        default="60s", metadata=_help("on SIGTERM, how long to wait for running jobs")
    )
    log_json: bool = field(default=False, metadata=_help("log JSON lines"))
    notify_on: str = field(
        default="always", metadata=_help("when to notify: always, failure, change")
    )
    crontab_sync: list[str] = field(
        default_factory=_list, metadata=_help("crontab file or folder to keep imported as jobs")
    )
    crontab_cluster_wide: bool = field(
        default=False, metadata=_help("synced crontab jobs may run on any node, not only this one")
    )
    rpc_tls_cert: str = field(
        default="", metadata=_help("PEM certificate for TLS on the RPC port (with --rpc-tls-key)")
    )
    rpc_tls_key: str = field(default="", metadata=_help("PEM private key of --rpc-tls-cert"))
    rpc_tls_ca: str = field(
        default="", metadata=_help("PEM CA: peers must present a certificate it signed (mTLS)")
    )
    encrypt_file: str = field(
        default="", metadata=_help("file holding the cluster key (instead of --encrypt)")
    )
    dev_insecure: bool = field(
        default=False,
        metadata=_help(
            "DEVELOPMENT ONLY: no cluster key, RPC and gossip unauthenticated and on loopback only"
        ),
    )
    # -- not keys: where the values came from ----------------------------------------------------
    config_file: str = field(default="", metadata={"key": False})
    warnings: list[str] = field(default_factory=_list, metadata={"key": False})

    def seconds(self, name: str) -> float:
        """A duration key (e.g. "shutdown_timeout") in seconds."""
        return parse_duration(getattr(self, name))

    def http_listen(self) -> tuple[str, int]:
        """(host, port) for the HTTP server; an empty host means every interface (0.0.0.0)."""
        host, port = split_host_port(self.http_addr)
        return host or "0.0.0.0", port

    def bind_listen(self) -> tuple[str, int]:
        """(host, port) for gossip; the port defaults to 8946 as in Dkron."""
        host, port = split_host_port(self.bind_addr, DEFAULT_BIND_PORT)
        return host or "0.0.0.0", port

    def redacted(self) -> dict[str, Any]:
        """All keys (kebab-case) with secrets masked, for logs and diagnostics."""
        out: dict[str, Any] = {}
        for spec in KEYS.values():
            value = getattr(self, spec.name)
            out[spec.kebab] = "<redacted>" if spec.name in _SECRET_KEYS and value else value
        return out


@dataclass(frozen=True)
class KeySpec:
    """One configuration key: its names, kind ('bool', 'int', 'str', 'duration', 'list',
    'dict'), default and help; the CLI builds the agent's flags from these."""

    name: str
    kind: str
    help: str
    flag: bool

    @property
    def kebab(self) -> str:
        return self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def default(self) -> Any:
        return getattr(Config(), self.name)


_DURATIONS = {
    "dead_server_cleanup",
    "retry_interval",
    "serf_reconnect_timeout",
    "reconcileinterval",
    "shutdown_timeout",
    "http_read_timeout",
    "http_header_timeout",
}
_POSITIVE_DURATIONS = {
    "retry_interval",
    "reconcileinterval",
    "http_read_timeout",
    "http_header_timeout",
}
_KIND_OF_TYPE = {"bool": "bool", "int": "int", "str": "str", "list[str]": "list"}


def _kind(f: Any) -> str:
    if f.name in _DURATIONS:
        return "duration"
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return _KIND_OF_TYPE.get(text, "dict" if text.startswith("dict") else "str")


KEYS: dict[str, KeySpec] = {
    f.name: KeySpec(f.name, _kind(f), f.metadata["help"], f.metadata["flag"])
    for f in fields(Config)
    if f.metadata.get("key", True)
}
# Lists whose values split on commas in every source, like Dkron's string-slice flags; headers
# and paths keep their commas except in the environment, where every list is comma-separated.
COMMA_LISTS = {
    "join",
    "retry_join",
    "dog_statsd_tags",
    "tags",
    "http_allowed_hosts",
    "cors_allowed_origins",
}

_EXPECTED = {
    "bool": "true or false",
    "int": "an integer",
    "str": "a string",
    "duration": 'a duration such as "30s" or "1h30m"',
    "list": "a list of strings",
    "dict": "a mapping of tag names to values (k=v)",
}


# -- addresses ---------------------------------------------------------------------------------

_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_ORIGIN = re.compile(r"(?i)https?://([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


def _is_ip_text(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def split_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Split "host:port", "[v6]:port" or ":port" (every interface) as Go's net package does.

    Without a port, `default_port` is used, or ValueError is raised when there is none.
    """
    if "://" in text:
        raise ValueError(f'"{text}" is a URL; give host:port')
    if "{{" in text:
        raise ValueError(f'"{text}": go-sockaddr templates are not supported; give an address')
    host, port_text = text, None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f'"{text}": missing "]" after an IPv6 address')
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f'"{text}": expected ":port" after "]"')
            port_text = rest[1:]
        _check_ip(host, text, v6=True)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        if default_port is None:
            raise ValueError(f'"{text}": write IPv6 addresses as [address]:port')
        _check_ip(host, text, v6=True)
    if port_text is None:
        if default_port is None:
            raise ValueError(f'"{text}": missing port (write host:port or :port)')
        port = default_port
    else:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f'"{text}": port must be a number from 0 to 65535')
        port = int(port_text)
    if host and ":" not in host and not _HOSTNAME.fullmatch(host):
        raise ValueError(f'"{text}": "{host}" is not a valid host name or IP address')
    return host, port


def _check_ip(host: str, text: str, v6: bool) -> None:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f'"{text}": "{host}" is not a valid IP address') from None
    if v6 and addr.version != 6:
        raise ValueError(f'"{text}": brackets are for IPv6 addresses only')


# -- reading sources -----------------------------------------------------------------------------


def default_search_dirs(environ: Mapping[str, str]) -> list[str]:
    """Where Dkron looks for dkron.yml and friends, in order."""
    dirs = ["/etc/dkron"]
    if environ.get("HOME"):
        dirs.append(os.path.join(environ["HOME"], ".dkron"))
    dirs.append("./config")
    return dirs


def find_config_file(search_dirs: list[str]) -> tuple[str | None, list[str]]:
    """The first dkron.{yml,yaml,json,toml} in the search folders, and warnings about others."""
    for folder in search_dirs:
        found = [os.path.join(folder, n) for n in CONFIG_NAMES]
        found = [p for p in found if os.path.isfile(p)]
        if found:
            warnings = [f"config file {p} ignored: {found[0]} is used" for p in found[1:]]
            return found[0], warnings
    return None, []


def read_config_file(path: str) -> dict[str, Any]:
    """Parse a YAML, JSON or TOML config file (by extension) into a mapping."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".yml", ".yaml", ".json", ".toml"):
        raise ConfigError(
            f"config file {path}: unsupported extension; use .yml, .yaml, .json, .toml"
        )
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {e.start})") from None
    try:
        if ext == ".json":
            data = json.loads(text)
        elif ext == ".toml":
            data = tomllib.loads(text)
        else:
            data = miniyaml.loads(text, path)
    except miniyaml.YamlError as e:
        raise ConfigError(f"config file {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path}:{e.lineno}: invalid JSON: {e.msg}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: invalid TOML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of keys to values")
    return data


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _file_values(data: dict[str, Any], path: str, warnings: list[str]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    kebabs = [s.kebab for s in KEYS.values()]
    for raw_key, value in data.items():
        name = str(raw_key).strip().lower().replace("-", "_")
        if name in IGNORED_KEYS:
            warnings.append(f'config file {path}: key "{raw_key}" {IGNORED_KEYS[name]}')
            continue
        if name not in KEYS:
            hint = _suggest(str(raw_key).lower().replace("_", "-"), kebabs)
            raise ConfigError(f'config file {path}: unknown key "{raw_key}"{hint}')
        if name in out:
            raise ConfigError(
                f'config file {path}: key "{raw_key}" is given twice '
                f'(as "{out[name][2]}" and "{raw_key}")'
            )
        out[name] = (value, f'config file {path}: key "{raw_key}"', raw_key)
    return out


def _env_values(environ: Mapping[str, str], warnings: list[str]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    envs = {spec.env: spec.name for spec in KEYS.values()}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        if var not in envs:
            close = difflib.get_close_matches(var.lower(), [e.lower() for e in envs], 1, 0.8)
            hint = f" (did you mean {close[0].upper()}?)" if close else ""
            warnings.append(f"environment variable {var} is not a Dkron setting{hint}; ignored")
            continue
        if value == "":
            continue  # an empty variable counts as unset, as in Dkron
        out[envs[var]] = (value, f"environment variable {var}", var)
    return out


def _flag_values(flags: Mapping[str, Any]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for raw_key, value in flags.items():
        name = raw_key.replace("-", "_")
        name = "tags" if name == "tag" else name
        if name not in KEYS:
            raise ConfigError(f"unknown flag --{raw_key.replace('_', '-')}")
        flag = "--tag" if name == "tags" else f"--{KEYS[name].kebab}"
        out[name] = (value, f"flag {flag}", flag)
    return out


# -- typing values -------------------------------------------------------------------------------


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool spellings."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(text)


def _split_commas(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_tags(items: list[str], where: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f'{where}: tag "{item}" must be written key=value')
        tags[key.strip()] = value.strip()
    return tags


def _scalar_text(value: Any) -> str | None:
    """Numbers in files may stand for strings (a YAML password of digits); booleans may not."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _coerce(spec: KeySpec, value: Any, where: str) -> Any:
    """Turn a value from any source into the key's type, or raise ConfigError."""
    kind = spec.kind

    def wrong() -> ConfigError:
        shown = json.dumps(value) if isinstance(value, (str, int, float, bool)) else repr(value)
        return ConfigError(f"{where}: expected {_EXPECTED[kind]}, got {shown}")

    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return parse_bool(value.strip())
            except ValueError:
                if value.strip().lower() in ("yes", "no", "on", "off", "y", "n"):
                    raise ConfigError(f"{wrong()} (YAML 1.2 reads {value} as text)") from None
                raise wrong() from None
        raise wrong()
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            return int(value)
        raise wrong()
    if kind in ("str", "duration"):
        text = value if kind == "duration" and isinstance(value, str) else None
        text = text if text is not None else (_scalar_text(value) if kind == "str" else None)
        if text is None:
            raise wrong()
        return text
    if kind == "list":
        if isinstance(value, str):
            value = [value]
        items = [_scalar_text(v) for v in value] if isinstance(value, list) else [None]
        if any(v is None for v in items):
            raise wrong()
        if spec.name in COMMA_LISTS or where.startswith("environment"):
            return [part for v in items for part in _split_commas(v)]  # type: ignore[arg-type]
        return items
    # dict (tags)
    if isinstance(value, dict):
        tags = {}
        for k, v in value.items():
            text = "true" if v is True else "false" if v is False else _scalar_text(v)
            if text is None:
                raise ConfigError(f'{where}: tag "{k}" must have a plain value, got {v!r}')
            tags[str(k)] = text
        return tags
    if isinstance(value, str):
        return _parse_tags(_split_commas(value), where)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _parse_tags([p for v in value for p in _split_commas(v)], where)
    raise wrong()


# -- validation ----------------------------------------------------------------------------------


def _validate(cfg: Config, where: dict[str, str]) -> None:
    def fail(name: str, message: str) -> ConfigError:
        origin = where.get(name, f'default of "{KEYS[name].kebab}"')
        return ConfigError(f"{origin}: {message}")

    def in_range(name: str, low: int, high: int | None = None) -> None:
        value = getattr(cfg, name)
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise fail(name, f"must be {bound}, got {value}")

    def one_of(name: str, choices: tuple[str, ...]) -> None:
        value = getattr(cfg, name).strip().lower()
        if value not in choices:
            raise fail(name, f'must be one of {", ".join(choices)}; got "{getattr(cfg, name)}"')
        setattr(cfg, name, value)

    for name in ("data_dir", "node_name", "datacenter", "region"):
        if not getattr(cfg, name).strip():
            raise fail(name, "must not be empty")
    in_range("bootstrap_expect", 0)
    in_range("rpc_port", 0, 65535)
    in_range("advertise_rpc_port", 0, 65535)
    in_range("mail_port", 0, 65535)
    in_range("retry_max", 0)
    in_range("raft_multiplier", 1, 10)
    in_range("raft_max_voters", 1, 9)
    in_range("max_body_bytes", 1)
    in_range("http_max_connections", 1)
    in_range("executions_per_job", 1)
    one_of("profile", PROFILES)
    one_of("log_level", LOG_LEVELS)
    one_of("notify_on", NOTIFY_ON)
    for name in sorted(_DURATIONS):
        try:
            seconds = parse_duration(getattr(cfg, name))
        except ValueError as e:
            raise fail(name, str(e)) from None
        if seconds < 0 or (seconds == 0 and name in _POSITIVE_DURATIONS):
            raise fail(name, f'must be a positive duration, got "{getattr(cfg, name)}"')
    addresses = {
        "http_addr": None,
        "bind_addr": DEFAULT_BIND_PORT,
        "advertise_addr": DEFAULT_BIND_PORT,
        "statsd_addr": None,
        "dog_statsd_addr": None,
    }
    for name, default_port in addresses.items():
        value = getattr(cfg, name)
        if value or name in ("http_addr", "bind_addr"):
            try:
                split_host_port(value, default_port)
            except ValueError as e:
                raise fail(name, f"bad address {e}") from None
    if cfg.encrypt:
        try:
            key = base64.b64decode(cfg.encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise fail("encrypt", "must be base64 text, as printed by 'dkron keygen'") from None
        if len(key) not in (16, 24, 32):
            raise fail("encrypt", f"must decode to 16, 24 or 32 bytes, got {len(key)}")
    _validate_key(cfg, fail)
    _validate_tls(cfg, fail)
    for name in ("webhook_headers", "pre_webhook_headers"):
        for header in getattr(cfg, name):
            if ":" not in header or not header.split(":", 1)[0].strip():
                raise fail(name, f'header "{header}" must be written "Name: value"')
    problem = reserved_tag_problem(cfg.tags)
    if problem:
        raise fail("tags", problem)
    for name in ("join", "retry_join", "crontab_sync"):
        if any(not item.strip() for item in getattr(cfg, name)):
            raise fail(name, "must not contain empty entries")
    for origin in cfg.cors_allowed_origins:
        if origin.strip() != "*" and not _ORIGIN.fullmatch(origin.strip().rstrip("/")):
            raise fail(
                "cors_allowed_origins",
                f'"{origin}" is not an origin: write scheme://host[:port], e.g. '
                "https://ops.example.com, or *",
            )
    for host in cfg.http_allowed_hosts:
        name = host.strip()
        if name != "*" and not (_HOSTNAME.fullmatch(name) or _is_ip_text(name.strip("[]"))):
            raise fail("http_allowed_hosts", f'"{host}" is not a host name (no port, no scheme)')


def _validate_key(cfg: Config, fail: Callable[[str, str], ConfigError]) -> None:
    """One source of the cluster key at most; development mode only on loopback."""
    if cfg.encrypt and cfg.encrypt_file:
        raise fail("encrypt_file", "give the cluster key once: encrypt or encrypt-file, not both")
    if cfg.dev_insecure:
        for name in ("encrypt", "encrypt_file"):
            if getattr(cfg, name):
                raise fail(name, "dev-insecure turns the cluster key off: do not give both")
        host, _ = split_host_port(cfg.bind_addr, DEFAULT_BIND_PORT)
        if not is_loopback(host):
            raise fail(
                "dev_insecure",
                f"RPC and gossip without authentication listen on loopback only; bind-addr "
                f'"{cfg.bind_addr}" is not a loopback address (use 127.0.0.1)',
            )
    if cfg.encrypt_file:
        try:
            read_key_file(cfg.encrypt_file)
        except ValueError as e:
            raise fail("encrypt_file", str(e)) from None


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP addresses (an empty host means every interface)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_tls(cfg: Config, fail: Callable[[str, str], ConfigError]) -> None:
    """The RPC TLS files exist and load (ssl is imported only when TLS is asked for)."""
    names = ("rpc_tls_cert", "rpc_tls_key", "rpc_tls_ca")
    if not any(getattr(cfg, n) for n in names):
        return
    if not cfg.rpc_tls_cert or not cfg.rpc_tls_key:
        given = "rpc_tls_cert" if cfg.rpc_tls_cert else "rpc_tls_key"
        if not cfg.rpc_tls_cert and not cfg.rpc_tls_key:
            given = "rpc_tls_ca"
        raise fail(given, "TLS on the RPC port needs both rpc-tls-cert and rpc-tls-key")
    for name in names:
        path = getattr(cfg, name)
        if path and not os.path.isfile(path):
            raise fail(name, f'no such file "{path}"')
    from dkron_pkg.rpc_tls import load_tls

    try:
        load_tls(cfg.rpc_tls_cert, cfg.rpc_tls_key, cfg.rpc_tls_ca)
    except ValueError as e:  # "rpc-tls-...: why": the origin below names the key already
        flag, _, why = str(e).partition(": ")
        raise fail("rpc_tls_ca" if flag == "rpc-tls-ca" else "rpc_tls_cert", why) from None


# -- entry point ---------------------------------------------------------------------------------


def load_config(
    argv_flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_path: str | None,
    *,
    search_dirs: list[str] | None = None,
) -> Config:
    """Build the agent's Config: flags > DKRON_* environment > config file > defaults.

    `argv_flags` holds only the flags given on the command line (snake_case or kebab-case
    names; "tag" or "tags"); values may be strings, as typed, or already typed values.
    `config_path` is --config; without it the standard folders are searched.
    Raises ConfigError with a message naming the key, the expected type and the source.
    """
    warnings: list[str] = []
    path = config_path
    if path is None:
        path, found_warnings = find_config_file(
            search_dirs if search_dirs is not None else default_search_dirs(environ)
        )
        warnings.extend(found_warnings)
    layers = []
    if path is not None:
        layers.append(_file_values(read_config_file(path), path, warnings))
    layers.append(_env_values(environ, warnings))
    layers.append(_flag_values(argv_flags))

    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for layer in layers:
        for name, (value, origin, _raw) in layer.items():
            if value is None and origin.startswith("config file"):
                continue  # an empty YAML value ("key:") leaves the default
            values[name] = _coerce(KEYS[name], value, origin)
            where[name] = origin
    cfg = Config(**values, config_file=os.path.abspath(path) if path else "", warnings=warnings)
    _validate(cfg, where)
    return cfg


def reloader(
    argv_flags: Mapping[str, Any], environ: Mapping[str, str], config_path: str | None
) -> Callable[[], Config]:
    """A callable the agent runs on SIGHUP: the same sources read again, into a fresh Config.

    It raises ConfigError when the file became invalid; the agent then keeps its old Config.
    """
    flags = dict(argv_flags)
    return lambda: load_config(flags, environ, config_path)

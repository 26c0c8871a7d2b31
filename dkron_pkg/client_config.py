"""Where the command-line clients (`dkron leave`, `dkron raft`, `dkron crontab`) find the API.

They look where the agent took its own settings from, so a node started with a config file or
DKRON_HTTP_ADDR is found without flags: an explicit flag, then DKRON_HTTP_ADDR /
DKRON_API_TOKEN, then the agent's config file (--config, or the first dkron.yml/.yaml/.json/
.toml in /etc/dkron, ~/.dkron and ./config, as the agent searches), then 127.0.0.1:8080.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dkron_pkg.config import ConfigError, default_search_dirs, load_config, split_host_port

DEFAULT_ADDR = "127.0.0.1:8080"
HELP = (
    "the agent's HTTP API, URL or HOST:PORT (default: DKRON_HTTP_ADDR, else http-addr in the "
    "agent's config file, else 127.0.0.1:8080)"
)


@dataclass(frozen=True)
class ApiTarget:
    url: str  # base URL, no trailing slash
    token: str
    source: str  # where the address came from, for error messages
    warning: str = ""  # a config file that could not be read


def base_url(addr: str) -> str:
    """The base URL for an API address; a wildcard listen address means this host."""
    if "://" in addr:
        return addr.rstrip("/")
    host, port = split_host_port(addr)  # ValueError names what is wrong
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def find_agent_api(
    environ: Mapping[str, str],
    addr: str | None = None,
    token: str | None = None,
    config_path: str | None = None,
    search_dirs: list[str] | None = None,
) -> ApiTarget:
    """The API to talk to: `addr`/`token` when given, else the agent's own settings.

    Raises ConfigError (or ValueError for a bad address) when --config names a file that
    cannot be read; an unreadable config file found by searching only gives a warning."""
    warning = ""
    file_addr = file_token = ""
    config_file = ""
    try:
        dirs = search_dirs if search_dirs is not None else default_search_dirs(environ)
        # Only the file: DKRON_* variables are read below, one by one, so that an unrelated
        # bad variable does not stop a client.
        cfg = load_config({}, {}, config_path, search_dirs=dirs)
        config_file = cfg.config_file
        if config_file:
            file_addr, file_token = cfg.http_addr, cfg.api_token
    except ConfigError as e:
        if config_path is not None:
            raise
        warning = f"ignoring the agent's config file: {e}"
    if addr:
        source = "--api/--http-addr"
    elif environ.get("DKRON_HTTP_ADDR"):
        addr, source = environ["DKRON_HTTP_ADDR"], "DKRON_HTTP_ADDR"
    elif file_addr:
        addr, source = file_addr, f"the agent's config file {config_file}"
    else:
        addr, source = DEFAULT_ADDR, "the default address"
    if not token:
        token = environ.get("DKRON_API_TOKEN", "") or file_token
    return ApiTarget(base_url(addr), token or "", source, warning)

"""The `dkron` command: Dkron's commands and flag names on top of our agent and HTTP API.

Every failure ends in one line `dkron: error: ...` on stderr: exit status 2 for bad usage or
configuration, 1 for anything that went wrong while doing the work. Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, NoReturn

import dkron_pkg
from dkron_pkg import client_config
from dkron_pkg.config import KEYS, ConfigError, load_config, reloader

PROG = "dkron"
# Gossip protocol versions shown by `version`, like Serf's "Agent Protocol"; swim.py may
# publish PROTOCOL_MIN / PROTOCOL_MAX to replace these.
GOSSIP_PROTOCOL_MIN = 1
GOSSIP_PROTOCOL_MAX = 1
VISIBLE_COMMANDS = "{agent,keygen,version,leave,raft,crontab}"


class UsageError(Exception):
    """Bad command line: exit status 2."""


class CommandError(Exception):
    """The command could not do its work: exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so main prints one line."""

    def error(self, message: str) -> NoReturn:
        message = message.replace(", 'selfcheck'", "")  # keep the hidden command hidden
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- parser ------------------------------------------------------------------------------------


def _add_agent_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=argparse.SUPPRESS, help="config file (yml, json, toml)")
    for spec in KEYS.values():
        if not spec.flag:
            continue
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": spec.help}
        default = spec.default
        if default not in ("", [], {}, False, 0) and spec.name != "node_name":
            shown = str(default).lower() if isinstance(default, bool) else default
            kwargs["help"] += f" [default: {shown}]"
        if spec.kind == "bool":
            kwargs.update(nargs="?", const="true", metavar="BOOL")
            kwargs["help"] += f"; --{spec.kebab}=false turns it off"
        elif spec.kind == "list":
            kwargs.update(action="append", metavar="VALUE")
            kwargs["help"] += " (repeatable)"
        elif spec.kind == "dict":
            parser.add_argument(
                "--tag", dest="tags", action="append", metavar="KEY=VALUE", **kwargs
            )
            continue
        else:
            kwargs["metavar"] = spec.kind.upper() if spec.kind != "str" else "VALUE"
        parser.add_argument(f"--{spec.kebab}", dest=spec.name, **kwargs)


def _add_client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http-addr", default=None, metavar="ADDR", help=client_config.HELP)
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="the agent's config file, read for http-addr and api-token (default: the file the "
        "agent finds in /etc/dkron, ~/.dkron or ./config)",
    )
    parser.add_argument(
        "--rpc-addr",
        default=None,
        help="accepted for Dkron compatibility; this tool talks to the HTTP API instead",
    )
    parser.add_argument(
        "--api-token",
        default=None,
        help="API token of the agent (default: DKRON_API_TOKEN, else api-token in the agent's "
        "config file)",
    )


def build_parser() -> _Parser:
    """The whole command tree; `selfcheck` is hidden (it verifies a built dkron.pyz)."""
    parser = _Parser(
        prog=PROG,
        description="Distributed, fault-tolerant cron compatible with Dkron.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", metavar=VISIBLE_COMMANDS, parser_class=_Parser)

    agent = sub.add_parser(
        "agent",
        help="run a node (server with --server)",
        description="Start a Dkron node. Flags override DKRON_* environment variables, "
        "which override the config file.",
        allow_abbrev=False,
    )
    _add_agent_flags(agent)
    sub.add_parser("keygen", help="print a new cluster key for --encrypt", allow_abbrev=False)
    sub.add_parser("version", help="print the version", allow_abbrev=False)
    leave = sub.add_parser(
        "leave", help="make a running agent leave the cluster gracefully", allow_abbrev=False
    )
    _add_client_flags(leave)

    raft = sub.add_parser("raft", help="inspect and change the Raft peers", allow_abbrev=False)
    raft_sub = raft.add_subparsers(
        dest="raft_command", metavar="{list-peers,remove-peer}", parser_class=_Parser
    )
    raft_sub.required = True
    peers = raft_sub.add_parser("list-peers", help="list the Raft peers", allow_abbrev=False)
    _add_client_flags(peers)
    peers.add_argument(
        "--stale",
        action="store_true",
        help="answer from the server's own copy, even when it cannot reach a leader",
    )
    remove = raft_sub.add_parser("remove-peer", help="remove a Raft peer", allow_abbrev=False)
    _add_client_flags(remove)
    remove.add_argument("--peer-id", required=True, help="ID (node name) of the peer to remove")

    sub.add_parser(
        "crontab",
        help="import, check and export crontabs (see 'dkron crontab --help')",
        add_help=False,
    )
    sub.add_parser("selfcheck", allow_abbrev=False)  # hidden: no help text
    return parser


# -- commands ----------------------------------------------------------------------------------


def _cmd_agent(ns: argparse.Namespace) -> int:
    flags = {k: v for k, v in vars(ns).items() if k in KEYS}
    config_path = getattr(ns, "config", None)
    config = load_config(flags, os.environ, config_path)
    for warning in config.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    try:
        from dkron_pkg.agent import run_agent
    except ModuleNotFoundError as e:
        if e.name != "dkron_pkg.agent":
            raise
        raise CommandError("the agent is not part of this build (dkron_pkg/agent.py is missing)")
    except ImportError as e:
        raise CommandError(f"the agent cannot start: {e}") from None
    return int(run_agent(config, reload=reloader(flags, os.environ, config_path)) or 0)


def _cmd_keygen(ns: argparse.Namespace) -> int:
    from dkron_pkg.cluster_key import new_key_text

    print(new_key_text())
    return 0


def gossip_protocol_versions() -> tuple[int, int]:
    """(min, max) gossip protocol versions this build speaks."""
    try:
        from dkron_pkg import swim  # type: ignore[attr-defined]
    except ImportError:
        return GOSSIP_PROTOCOL_MIN, GOSSIP_PROTOCOL_MAX
    low = getattr(swim, "PROTOCOL_MIN", GOSSIP_PROTOCOL_MIN)
    high = getattr(swim, "PROTOCOL_MAX", GOSSIP_PROTOCOL_MAX)
    return int(low), int(high)


def _cmd_version(ns: argparse.Namespace) -> int:
    low, high = gossip_protocol_versions()
    print(f"Name: {dkron_pkg.NAME}")
    print(f"Version: {dkron_pkg.__version__}")
    print(f"Codename: {dkron_pkg.CODENAME}")
    print(f"Agent Protocol: {high} (Understands back to: {low})")
    return 0


def api_base_url(http_addr: str) -> str:
    """The base URL for an agent's HTTP API; a wildcard listen address means this host."""
    try:
        return client_config.base_url(http_addr)
    except ValueError as e:
        raise UsageError(f"--http-addr: {e}") from None


def _request(ns: argparse.Namespace, method: str, path: str, timeout: float = 30.0) -> Any:
    """Call the agent's API; return the decoded JSON body (or None); CommandError otherwise."""
    if ns.rpc_addr:
        print(
            f"{PROG}: note: --rpc-addr is accepted for compatibility; using the HTTP API at "
            f"{ns.http_addr}",
            file=sys.stderr,
        )
    if ns.http_addr:
        api_base_url(ns.http_addr)  # a bad flag is a usage error
    try:
        target = client_config.find_agent_api(os.environ, ns.http_addr, ns.api_token, ns.config)
    except ValueError as e:  # ConfigError too: --config names a file that cannot be used
        raise UsageError(str(e)) from None
    if target.warning:
        print(f"{PROG}: warning: {target.warning}", file=sys.stderr)
    url = target.url + path
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    request.add_header("Accept", "application/json")
    if target.token:
        request.add_header("Authorization", f"Bearer {target.token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        detail = _error_detail(e.read())
        hint = " (check --api-token)" if e.code == 401 else ""
        raise CommandError(f"{method} {url}: the agent answered {e.code} {e.reason}{detail}{hint}")
    except urllib.error.URLError as e:
        raise CommandError(f"cannot reach the agent at {url}: {e.reason}{_from(target)}") from None
    except (TimeoutError, OSError) as e:
        raise CommandError(f"cannot reach the agent at {url}: {e}{_from(target)}") from None
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def _from(target: client_config.ApiTarget) -> str:
    return f" (address from {target.source}; give --http-addr to choose another)"


def _error_detail(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            text = str(data.get("error") or data.get("message") or text)
    except ValueError:
        pass
    text = text.splitlines()[0] if text else ""
    return f": {text[:300]}" if text else ""


def _cmd_leave(ns: argparse.Namespace) -> int:
    _request(ns, "POST", "/v1/leave", timeout=120.0)
    print("Graceful leave complete")
    return 0


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces, like Go's tabwriter output in Dkron."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _cmd_list_peers(ns: argparse.Namespace) -> int:
    peers = _request(ns, "GET", "/v1/raft/peers" + ("?stale" if ns.stale else ""))
    if not isinstance(peers, list) or not all(isinstance(p, dict) for p in peers):
        raise CommandError("the agent's answer to GET /v1/raft/peers is not a list of peers")
    rows = [["Node", "ID", "Address", "State", "Voter"]]
    for peer in peers:
        voter = peer.get("voter", "")
        voter_text = str(voter).lower() if isinstance(voter, bool) else str(voter)
        rows.append(
            [str(peer.get(k, "")) for k in ("node", "id", "address", "state")] + [voter_text]
        )
    print(format_table(rows))
    return 0


def _cmd_remove_peer(ns: argparse.Namespace) -> int:
    if not ns.peer_id.strip():
        raise UsageError("--peer-id must not be empty")
    _request(ns, "DELETE", "/v1/raft/peers/" + urllib.parse.quote(ns.peer_id, safe=""))
    print(f"Removed peer with id {ns.peer_id}")
    return 0


def _cmd_crontab(argv: list[str]) -> int:
    try:
        from crontab_compat.cli import main as crontab_main
    except ModuleNotFoundError as e:
        if e.name not in ("crontab_compat", "crontab_compat.cli"):
            raise
        raise CommandError("the crontab commands are not part of this build") from None
    return int(crontab_main(argv) or 0)


def _cmd_selfcheck(ns: argparse.Namespace) -> int:
    from dkron_pkg.selfcheck import run_selfcheck

    return run_selfcheck(sys.stdout)


_COMMANDS = {
    "agent": _cmd_agent,
    "keygen": _cmd_keygen,
    "version": _cmd_version,
    "leave": _cmd_leave,
    "list-peers": _cmd_list_peers,
    "remove-peer": _cmd_remove_peer,
    "selfcheck": _cmd_selfcheck,
}


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "crontab":
        return _cmd_crontab(argv[1:])
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    if ns.command is None:
        parser.print_help()
        return 0
    name = ns.raft_command if ns.command == "raft" else ns.command
    return _COMMANDS[name](ns)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `dkron` command line; return the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except (UsageError, ConfigError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except ModuleNotFoundError as e:
        print(
            f"{PROG}: error: missing Python module {e.name!r}: install the dependencies "
            "(pip install tzdata) or run dist/dkron.pyz",
            file=sys.stderr,
        )
        return 1
    except Exception as e:  # noqa: BLE001 - the promise is one line, never a traceback
        message = str(e).splitlines()[0] if str(e) else ""
        print(f"{PROG}: error: {type(e).__name__}: {message}", file=sys.stderr)
        return 1

"""`dkron crontab import|export|check`: move crontabs into the cluster and back.

Exit codes: 0 success, 1 rejected input or a failed import (nothing changed), 2 usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from crontab_compat.api_client import ApiError, DkronClient
from crontab_compat.apply import apply_plan
from crontab_compat.convert import parse_tags
from crontab_compat.export import export_crontab
from crontab_compat.fields import DIALECTS
from crontab_compat.plan import format_plan, plan_import
from crontab_compat.sources import collect_sources, read_source
from crontab_compat.trust import in_cron_place
from crontab_compat.users import UserLookup, current_user, system_user_lookup
from dkron_pkg import client_config
from dkron_pkg.osdeps import HOST_FILES, FileOwners


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with a one-line message, no traceback
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


KIND_HELP = (
    "Whose crontab a file is, decided as cron does: /etc/crontab and files in a cron.d "
    "directory are system crontabs (a user field before each command); a file in a spool "
    "directory (/var/spool/cron/crontabs/NAME, any crontabs/NAME) is NAME's crontab; any other "
    "file is the crontab of the user running this command, as `crontab FILE` would install it, "
    "unless --user or --system says otherwise."
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dkron crontab",
        description="Import crontab files as Dkron jobs, check them, export jobs as a crontab.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    imp = commands.add_parser(
        "import", help="import crontab files or directories", description=KIND_HELP
    )
    imp.add_argument("paths", nargs="+", metavar="FILE|DIR", help="crontab files or directories")
    imp.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    _kind_args(imp)
    target = imp.add_mutually_exclusive_group()
    target.add_argument("--pin-node", metavar="NODE", help="run the jobs only on this node")
    target.add_argument(
        "--tags",
        action="append",
        default=[],
        metavar="k=v[:n]",
        help="job tags selecting the nodes that run the jobs, as in a job's tags (repeatable); "
        "without --tags or --pin-node the jobs run on every node",
    )
    imp.add_argument("--host", help="name of the host the files come from (default: hostname)")
    imp.add_argument("--timezone", help="zone of the files' times (default: the host zone)")
    strictness = imp.add_mutually_exclusive_group()
    strictness.add_argument(
        "--strict",
        dest="strict",
        action="store_true",
        default=None,
        help="import nothing when any line is rejected (default for --dialect debian)",
    )
    strictness.add_argument(
        "--lenient",
        dest="strict",
        action="store_false",
        help="import the good lines and report the rejected ones (default for cronie)",
    )
    _api_args(imp)

    exp = commands.add_parser("export", help="write cron-expressible jobs as a crontab")
    exp.add_argument("--user", help="write this user's crontab (no user field)")
    exp.add_argument("--output", "-o", help="file to write (default: standard output)")
    _api_args(exp)

    check = commands.add_parser(
        "check", help="validate crontab files; change nothing", description=KIND_HELP
    )
    check.add_argument("paths", nargs="+", metavar="FILE", help="crontab files or directories")
    _kind_args(check)
    check.add_argument(
        "--installed",
        action="store_true",
        help="judge owner, mode and symlinks as cron and --crontab-sync do (always done for "
        "/etc/crontab, /etc/cron.d and /var/spool/cron)",
    )
    return parser


def _kind_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="debian",
        help="whose cron to follow: debian (one bad line voids the file) or cronie (bad lines "
        "are skipped; CRON_TZ, RANDOM_DELAY) (default: debian)",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--user", help="the files are this user's crontab (no user field), wherever they are"
    )
    kind.add_argument(
        "--system",
        action="store_true",
        help="the files are system crontabs, with a user field before each command, as "
        "/etc/crontab, wherever they are",
    )


def _api_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", metavar="URL", help=client_config.HELP)
    parser.add_argument(
        "--token",
        help="API token, when the agent requires one (default: DKRON_API_TOKEN, else api-token "
        "in the agent's config file)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the agent's config file, read for http-addr and api-token (default: the file the "
        "agent finds in /etc/dkron, ~/.dkron or ./config)",
    )


def _client(args: argparse.Namespace, err: TextIO) -> DkronClient:
    """A client for the API named by --api, or found where the agent was configured."""
    try:
        target = client_config.find_agent_api(os.environ, args.api, args.token, args.config)
    except ValueError as exc:  # a bad --api, or an unusable --config file
        raise ApiError(str(exc)) from None
    if target.warning:
        print(f"warning: {target.warning}", file=err)
    source = "" if args.api else f" (address from {target.source}; give --api to choose another)"
    return DkronClient(target.url, target.token or None, source=source)


def _other_owner(args: argparse.Namespace) -> str | None:
    """Who owns files outside cron's own places: the invoking user, unless --system."""
    return None if args.system else current_user()


def main(
    argv: list[str],
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    lookup: UserLookup = system_user_lookup,
    owners: FileOwners = HOST_FILES,
) -> int:
    """Run one `dkron crontab` command; returns the process exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(exc, file=err)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        if args.command == "check":
            return _check(args, out, lookup, owners)
        if args.command == "export":
            return _export(args, out, err)
        return _import(args, out, err, lookup)
    except ApiError as exc:
        print(f"error: {exc}", file=err)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2


def _check(args: argparse.Namespace, out: TextIO, lookup: UserLookup, owners: FileOwners) -> int:
    """Parse the files as cron would; cron's own files (or all, with --installed) are also
    judged by owner and mode, with the verdict --crontab-sync gives."""
    sources, errors, warnings = collect_sources(
        args.paths, args.user, args.dialect, _other_owner(args)
    )
    entries = 0
    for source in sources:
        judged = args.installed or in_cron_place(source.path)
        parsed = read_source(source, args.dialect, lookup, owners if judged else None)
        errors.extend(parsed.errors)
        warnings.extend(parsed.warnings)
        entries += len(parsed.entries)
    for issue in errors:
        print(f"error: {issue}", file=out)
    for issue in warnings:
        print(f"warning: {issue}", file=out)
    print(f"{len(sources)} file(s), {entries} usable entries, {len(errors)} error(s)", file=out)
    return 1 if errors else 0


def _import(args: argparse.Namespace, out: TextIO, err: TextIO, lookup: UserLookup) -> int:
    tags = parse_tags(args.tags) if args.tags else None
    client = _client(args, err)
    existing = client.list_jobs()
    plan = plan_import(
        args.paths,
        existing,
        args.dialect,
        user=args.user,
        host=args.host,
        pin_node=args.pin_node,
        tags=tags,
        timezone=args.timezone,
        lookup=lookup,
        strict=args.strict,
        other_owner=_other_owner(args),
    )
    if args.dry_run or plan.blocked or not plan.changes:
        print(format_plan(plan), file=out)
        if args.dry_run and not plan.blocked:
            print("dry run: nothing changed", file=out)
        return 1 if plan.errors else 0
    result = apply_plan(plan, client)
    print(format_plan(plan, applied=result.ok), file=out)
    if not result.ok:
        print(f"error: {result.message()}", file=err)
        return 1
    print(result.message(), file=out)
    return 1 if plan.errors else 0


def _export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    client = _client(args, err)
    text, skipped = export_crontab(client.list_jobs(), user=args.user)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror}", file=err)
            return 1
    else:
        out.write(text)
    if skipped:
        print(f"{len(skipped)} job(s) have no crontab form and were not exported", file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

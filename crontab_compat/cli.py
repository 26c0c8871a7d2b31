"""`dkron crontab import|export|check`: move crontabs into the cluster and back.

Exit codes: 0 success, 1 rejected input or a failed import (nothing changed), 2 usage errors.
"""

from __future__ import annotations

import argparse
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
from crontab_compat.users import UserLookup, system_user_lookup
from dkron_pkg.osdeps import HOST_FILES, FileOwners

DEFAULT_API = "http://127.0.0.1:8080"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with a one-line message, no traceback
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dkron crontab", description="Import crontab files as Dkron jobs.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    imp = commands.add_parser("import", help="import crontab files or directories")
    imp.add_argument("paths", nargs="+", metavar="FILE|DIR")
    imp.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    imp.add_argument("--dialect", choices=DIALECTS, default="debian")
    imp.add_argument("--user", help="the files are this user's crontab (no user field)")
    target = imp.add_mutually_exclusive_group()
    target.add_argument("--pin-node", metavar="NODE", help="run the jobs only on this node")
    target.add_argument("--tags", action="append", default=[], metavar="k=v[:n]")
    imp.add_argument("--host", help="name of the host the files come from (default: hostname)")
    imp.add_argument("--timezone", help="zone of the files' times (default: the host zone)")
    strictness = imp.add_mutually_exclusive_group()
    strictness.add_argument("--strict", dest="strict", action="store_true", default=None)
    strictness.add_argument("--lenient", dest="strict", action="store_false")
    _api_args(imp)

    exp = commands.add_parser("export", help="write cron-expressible jobs as a crontab")
    exp.add_argument("--user", help="write this user's crontab (no user field)")
    exp.add_argument("--output", "-o", help="file to write (default: standard output)")
    _api_args(exp)

    check = commands.add_parser("check", help="validate crontab files; change nothing")
    check.add_argument("paths", nargs="+", metavar="FILE")
    check.add_argument("--dialect", choices=DIALECTS, default="debian")
    check.add_argument("--user", help="the files are this user's crontab (no user field)")
    check.add_argument(
        "--installed",
        action="store_true",
        help="judge owner, mode and symlinks as cron and --crontab-sync do (always done for "
        "/etc/crontab, /etc/cron.d and /var/spool/cron)",
    )
    return parser


def _api_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=DEFAULT_API, help=f"agent API (default {DEFAULT_API})")
    parser.add_argument("--token", help="API token, when the agent requires one")


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
    sources, errors, warnings = collect_sources(args.paths, args.user, args.dialect)
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
    client = DkronClient(args.api, args.token)
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
    client = DkronClient(args.api, args.token)
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

"""The command field of a crontab entry: `%` ends the command and starts the job's stdin.

cron splits the command at the first `%` not preceded by a backslash; `\\%` becomes `%` and any
other backslash is kept. In the stdin part each unescaped `%` becomes a newline, `\\%` becomes
`%`, and a final newline is added unless the text already ends with one. An empty stdin part
means no input at all.
"""

from __future__ import annotations


def split_command(raw: str) -> tuple[str, str | None]:
    """Return (command, stdin) for a raw crontab command; stdin is None without a `%`."""
    out: list[str] = []
    escaped = False
    for index, ch in enumerate(raw):
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            out.append(ch)
            continue
        if ch == "%":
            return "".join(out), _translate_input(raw[index + 1 :])
        out.append(ch)
    return "".join(out), None


def _translate_input(data: str) -> str:
    if not data:
        return ""
    out: list[str] = []
    escaped = False
    need_newline = False
    for ch in data:
        if escaped:
            if ch != "%":
                out.append("\\")
        elif ch == "%":
            ch = "\n"
        escaped = ch == "\\"
        if not escaped:
            out.append(ch)
            need_newline = ch != "\n"
    if escaped:
        out.append("\\")
    if need_newline:
        out.append("\n")
    return "".join(out)


def join_command(command: str, stdin: str | None) -> str:
    """Inverse of split_command, for writing jobs back as crontab lines."""
    text = command.replace("%", "\\%")
    if stdin is None:
        return text
    body = stdin
    if stdin.endswith("\n") and stdin[:-1] and not stdin[:-1].endswith("\n"):
        body = stdin[:-1]  # cron adds the final newline back
    return text + "%" + body.replace("%", "\\%").replace("\n", "%")

"""The cluster key: the shared secret every node proves on RPC and puts on every gossip packet.

There is always one, unless the development flag `--dev-insecure` turns authentication off.
Where it comes from, first found wins:
1. `--encrypt KEY` (or `DKRON_ENCRYPT`, or `encrypt:` in the config file);
2. `--encrypt-file PATH` (or `DKRON_ENCRYPT_FILE`, or `encrypt-file:`): a file holding the key;
3. `<data-dir>/cluster.key`, the key this node kept from an earlier start;
4. a lone server (no `--join`/`--retry-join`, `--bootstrap-expect` at most 1, no Raft state)
   makes a new key at its first start and keeps it in `<data-dir>/cluster.key` (mode 0600, the
   same text `dkron keygen` prints); other nodes join it with that key.
Any other node without a key (an agent that is not a server, a server that joins others)
refuses to start: a key made up on its own could never match its cluster's.

A key given by 1 or 2 wins over a different `<data-dir>/cluster.key`; the log says so and the
file is left as it is.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("dkron.key")

KEY_FILE_NAME = "cluster.key"
KEY_BYTES = 16  # what `dkron keygen` prints, as in Dkron
KEY_SIZES = (16, 24, 32)
MAX_KEY_FILE_BYTES = 4096
SECURITY_KEY = "key"
SECURITY_INSECURE_DEV = "insecure-dev"


@dataclass(frozen=True)
class ClusterKey:
    """The key this node uses (None only in development mode) and where it came from."""

    key: bytes | None
    source: str

    @property
    def mode(self) -> str:
        """What `/health` reports: "key", or "insecure-dev" when authentication is off."""
        return SECURITY_KEY if self.key is not None else SECURITY_INSECURE_DEV


def new_key_text() -> str:
    """A new random key as `dkron keygen` prints it (base64 of 16 bytes)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_key_text(text: str, where: str) -> bytes:
    """The key bytes of a keygen-format text; ValueError naming `where` otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"{where}: the cluster key is not base64 text as printed by 'dkron keygen'"
        ) from None
    if len(raw) not in KEY_SIZES:
        raise ValueError(
            f"{where}: the cluster key must decode to 16, 24 or 32 bytes, got {len(raw)}"
        )
    return raw


def read_key_file(path: str) -> bytes:
    """The key kept in `path` (keygen text, surrounding whitespace ignored)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f'key file "{path}": no such file') from None
    except OSError as e:
        raise ValueError(f'key file "{path}": cannot read: {e.strerror or e}') from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ValueError(f'key file "{path}": too large for a cluster key')
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f'key file "{path}": not keygen text (make one with `dkron keygen`)')
    return parse_key_text(text, f'key file "{path}"')


def write_new_key(path: str) -> bytes:
    """Make a key and keep it in `path`, mode 0600, atomically (a crash leaves no half file)."""
    text = new_key_text()
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (text + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))
    return parse_key_text(text, path)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_lone_server(config: Any, data_dir: str) -> bool:
    """A server that forms its own cluster: the only kind that may make up a key."""
    if not getattr(config, "server", False):
        return False
    if getattr(config, "join", None) or getattr(config, "retry_join", None):
        return False
    if int(getattr(config, "bootstrap_expect", 0) or 0) > 1:
        return False
    return not os.path.isdir(os.path.join(data_dir, "raft"))


def resolve_key(config: Any, data_dir: str) -> ClusterKey:
    """This node's cluster key (see the module docstring); ValueError says what is missing."""
    given = (getattr(config, "encrypt", "") or "").strip()
    given_file = getattr(config, "encrypt_file", "") or ""
    kept = os.path.join(data_dir, KEY_FILE_NAME)
    if getattr(config, "dev_insecure", False):
        if given or given_file:
            raise ValueError(
                "dev-insecure turns authentication off: do not give encrypt or encrypt-file with it"
            )
        _warn_insecure()
        return ClusterKey(None, "none (--dev-insecure)")
    if given:
        found = ClusterKey(parse_key_text(given, "encrypt"), "the encrypt setting")
    elif given_file:
        found = ClusterKey(read_key_file(given_file), f'key file "{given_file}"')
    elif os.path.isfile(kept):
        found = ClusterKey(read_key_file(kept), f'key file "{kept}" (kept from an earlier start)')
        log.info("cluster key: using %s", found.source)
        return found
    elif is_lone_server(config, data_dir):
        key = write_new_key(kept)
        log.warning(
            'cluster key: none was given, so this server made one and keeps it in "%s" '
            "(mode 0600). Every other node of this cluster needs the same key: copy the file "
            "and start them with --encrypt-file PATH, or pass its content with --encrypt KEY "
            "or DKRON_ENCRYPT.",
            kept,
        )
        return ClusterKey(key, f'key file "{kept}" (made at first start)')
    else:
        role = "a server that joins others" if getattr(config, "server", False) else "an agent"
        raise ValueError(
            f"{role} needs the cluster key of its servers: give --encrypt KEY, --encrypt-file "
            f"PATH or DKRON_ENCRYPT (a lone server keeps the key it made in <data-dir>/"
            f"{KEY_FILE_NAME}; 'dkron keygen' makes a new one). For a test on this machine only, "
            "--dev-insecure turns authentication off."
        )
    _note_other_key(found, kept, given_file)
    log.info("cluster key: using %s", found.source)
    return found


def _note_other_key(found: ClusterKey, kept: str, given_file: str) -> None:
    """Say so when the data folder keeps a different key than the one given (which wins)."""
    if not os.path.isfile(kept) or (given_file and os.path.abspath(given_file) == kept):
        return
    try:
        other = read_key_file(kept)
    except ValueError:
        other = None
    if other != found.key:
        log.warning(
            'cluster key: %s is used; "%s" holds a different key and is ignored',
            found.source,
            kept,
        )


def _warn_insecure() -> None:
    for line in (
        "DEVELOPMENT MODE (--dev-insecure): RPC and gossip are NOT authenticated.",
        "Anyone who can reach them can run commands as this agent's user and change the cluster.",
        "RPC and gossip listen on loopback only. Never use --dev-insecure in production.",
    ):
        log.warning("!!! %s", line)

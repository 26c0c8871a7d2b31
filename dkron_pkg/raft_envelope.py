"""What the Raft driver stores around the job store: snapshot envelopes, address commands,
and the peers.json recovery file.

A Raft snapshot made by the driver holds two things: the node-id -> RPC address map that the
cluster has replicated, and the job store's own snapshot bytes. Both must travel together so a
follower restored by InstallSnapshot (or a node restarted from disk) knows where its peers are.

The address map is replicated like any other write: a DATA entry's command list may contain
`{"op": "raft.addresses", "addresses": {"node": "ip:port"}}`, which the driver applies itself
(merging into its map) instead of handing it to the store.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

ENVELOPE_MAGIC = b"DKRSNAP1"
ADDRESSES_OP = "raft.addresses"
_LEN = struct.Struct(">I")


class EnvelopeError(ValueError):
    """Snapshot bytes that were not written by the Raft driver."""


def pack_snapshot(addresses: dict[str, str], store_data: bytes) -> bytes:
    """Snapshot bytes for `RaftNode.compact`: header JSON (addresses) then the store's bytes."""
    header = json.dumps({"addresses": addresses}, sort_keys=True).encode()
    return ENVELOPE_MAGIC + _LEN.pack(len(header)) + header + store_data


def unpack_snapshot(data: bytes) -> tuple[dict[str, str], bytes]:
    """Inverse of `pack_snapshot`; raises EnvelopeError naming what is wrong."""
    if not data.startswith(ENVELOPE_MAGIC) or len(data) < len(ENVELOPE_MAGIC) + _LEN.size:
        raise EnvelopeError("snapshot does not start with the Raft driver's envelope")
    start = len(ENVELOPE_MAGIC) + _LEN.size
    (size,) = _LEN.unpack_from(data, len(ENVELOPE_MAGIC))
    if start + size > len(data):
        raise EnvelopeError("snapshot envelope header is truncated")
    try:
        header = json.loads(data[start : start + size])
        addresses = {str(k): str(v) for k, v in header["addresses"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EnvelopeError(f"snapshot envelope header is not valid: {exc}") from None
    return addresses, data[start + size :]


def addresses_command(addresses: dict[str, str]) -> dict:
    """The replicated command that records where nodes listen."""
    return {"op": ADDRESSES_OP, "addresses": dict(addresses)}


def is_driver_command(command: dict) -> bool:
    op = command.get("op") if isinstance(command, dict) else None
    return isinstance(op, str) and op.startswith("raft.")


def read_peers_file(path: Path) -> dict[str, str]:
    """Parse Dkron's recovery file `[{"id": "node", "address": "ip:6868"}]` into {id: address}.

    Raises ValueError with the file name and what is wrong, so a typo stops the start with a
    clear message instead of silently recovering into a broken configuration.
    """
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the peers file: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f'{path}: expected a non-empty list like [{{"id": "n1", "address": ...}}]')
    peers: dict[str, str] = {}
    for pos, item in enumerate(raw):
        node = item.get("id") if isinstance(item, dict) else None
        addr = item.get("address") if isinstance(item, dict) else None
        if not isinstance(node, str) or not node:
            raise ValueError(f'{path}: entry {pos} has no "id" string')
        if not isinstance(addr, str) or ":" not in addr:
            raise ValueError(f'{path}: entry {pos} ("{node}") needs an "address" like ip:6868')
        if node in peers:
            raise ValueError(f"{path}: node {node!r} is listed twice")
        peers[node] = addr
    return peers

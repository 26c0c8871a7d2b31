"""TLS on the RPC port: round trips, refused peers (wrong CA, no TLS), the flags, and three
servers forming a Raft group over mutual TLS.

Certificates are made at test time with the `openssl` command into tmp_path: one cluster CA
signing a certificate per node, and a second, foreign CA.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from agent_support import AgentProcess, shell_job
from test_cluster_raft import leader_of, seed_of

from dkron_pkg import rpc
from dkron_pkg.config import ConfigError, load_config
from dkron_pkg.rpc_tls import load_tls

KEY = os.urandom(32)
LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
    "subjectAltName=IP:127.0.0.1\n"
)


def openssl(*args: str, cwd: Path) -> None:
    tool = shutil.which("openssl")
    assert tool, "these tests need the openssl command (Debian package openssl)"
    subprocess.run([tool, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


class Pki:
    """A CA in `folder` that signs node certificates on request."""

    def __init__(self, folder: Path, name: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca = folder / "ca.pem"
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=folder,
        )  # fmt: skip
        self.serial = 1

    def issue(self, node: str) -> tuple[str, str]:
        """(certificate path, key path) for `node`, signed by this CA."""
        (self.folder / "leaf.ext").write_text(LEAF_EXTENSIONS)
        openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{node}.key", "-out", f"{node}.csr", "-subj", f"/CN={node}",
            cwd=self.folder,
        )  # fmt: skip
        self.serial += 1
        openssl(
            "x509", "-req", "-in", f"{node}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(self.serial), "-days", "2", "-extfile", "leaf.ext",
            "-out", f"{node}.pem",
            cwd=self.folder,
        )  # fmt: skip
        return str(self.folder / f"{node}.pem"), str(self.folder / f"{node}.key")

    def tls(self, node: str, ca: str | None = None):
        cert, key = self.issue(node)
        return load_tls(cert, key, str(self.ca) if ca is None else ca)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"), "dkron test cluster CA")


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("foreign"), "some other CA")


def serve(tls, key=KEY):
    seen: dict[str, list] = {"raft": [], "casts": []}

    def handler(method, args, peer):
        if method == "echo":
            return args
        seen["casts"].append((method, args))
        return None

    srv = rpc.RpcServer(
        "127.0.0.1", 0, key, handler, lambda b, p: seen["raft"].append(b), tls=tls
    ).start()
    srv.seen = seen
    return srv


def addr(srv) -> str:
    return f"127.0.0.1:{srv.port}"


def wait_until(predicate, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def drops(prefix: str) -> int:
    return sum(n for reason, n in rpc.DROPPED.items() if reason.startswith(prefix))


def test_round_trip_over_mutual_tls_with_the_cluster_key(pki):
    srv = serve(pki.tls("server"))
    client = rpc.RpcClient(KEY, tls=pki.tls("client"))
    try:
        assert client.call(addr(srv), "echo", {"a": [1, "x"]}) == {"a": [1, "x"]}
        client.cast(addr(srv), "note", {"n": 1})
        assert client.send_raft(addr(srv), b"\x00raft-bytes")
        assert wait_until(lambda: srv.seen["raft"] == [b"\x00raft-bytes"])
        assert wait_until(lambda: ("note", {"n": 1}) in srv.seen["casts"])
        big = "x" * 300_000  # many TLS records in one frame, both ways
        assert client.call(addr(srv), "echo", big) == big

        # Many threads calling at once over the one connection while its reader runs.
        results: list = []

        def caller(i: int) -> None:
            for j in range(20):
                results.append(client.call(addr(srv), "echo", [i, j]) == [i, j])

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert results == [True] * 160
    finally:
        client.close()
        srv.stop()


def test_raft_frames_sent_at_once_over_tls_arrive_whole_and_in_order(pki):
    """No-wait sends over TLS while a slow reader fills the socket and calls run beside them:
    the rest of a record is finished by a helper, and nothing is torn or reordered."""
    got: list[bytes] = []
    slow = threading.Event()

    def on_raft(data, peer):
        if slow.is_set():
            time.sleep(0.005)
        got.append(data)

    srv = rpc.RpcServer(
        "127.0.0.1", 0, KEY, lambda m, a, p: a, on_raft, tls=pki.tls("server")
    ).start()
    client = rpc.RpcClient(KEY, tls=pki.tls("client"))
    try:
        assert client.call(addr(srv), "echo", 1) == 1  # connected
        slow.set()
        frames = [i.to_bytes(4, "big") + os.urandom(250_000) for i in range(60)]
        calls: list = []
        caller = threading.Thread(
            target=lambda: calls.extend(client.call(addr(srv), "echo", i) for i in range(40))
        )
        caller.start()
        now = 0
        for frame in frames:
            if client.send_raft_now(addr(srv), frame):
                now += 1
            else:
                assert client.send_raft(addr(srv), frame)
        caller.join(30)
        assert now >= 1
        assert wait_until(lambda: len(got) == len(frames), timeout=30)
        assert got == frames
        assert calls == list(range(40))
    finally:
        client.close()
        srv.stop()


def test_a_client_certificate_from_another_ca_is_refused_and_counted(pki, foreign):
    srv = serve(pki.tls("server"))
    intruder = rpc.RpcClient(KEY, tls=foreign.tls("intruder", ca=str(pki.ca)))
    friend = rpc.RpcClient(KEY, tls=pki.tls("friend"))
    try:
        before = drops("TLS handshake refused")
        with pytest.raises(rpc.RpcError, match="TLS"):
            intruder.call(addr(srv), "echo", 1)
        assert wait_until(lambda: drops("TLS handshake refused") == before + 1)
        assert friend.call(addr(srv), "echo", 2) == 2  # the server is still serving
    finally:
        intruder.close()
        friend.close()
        srv.stop()


def test_a_server_certificate_from_another_ca_is_refused_by_the_client(pki, foreign):
    impostor = serve(foreign.tls("impostor", ca=str(pki.ca)))
    client = rpc.RpcClient(KEY, tls=pki.tls("client"))
    try:
        with pytest.raises(rpc.RpcError, match="CERTIFICATE_VERIFY_FAILED"):
            client.call(addr(impostor), "echo", 1)
        assert impostor.seen["casts"] == []
    finally:
        client.close()
        impostor.stop()


def test_plaintext_peers_and_garbage_are_refused_on_a_tls_port(pki):
    srv = serve(pki.tls("server"))
    plain = rpc.RpcClient(KEY, connect_timeout=0.5)
    friend = rpc.RpcClient(KEY, tls=pki.tls("friend"))
    try:
        before = drops("TLS handshake not completed")
        with pytest.raises(rpc.RpcError):
            plain.call(addr(srv), "echo", 1)
        assert wait_until(lambda: drops("TLS handshake not completed") == before + 1)

        garbage_before = drops("TLS handshake refused")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(200))
            s.settimeout(5)
            reply = s.recv(4096)
            assert reply[:1] in (b"", b"\x15")  # a TLS alert record or a close, nothing else
        assert wait_until(lambda: drops("TLS handshake refused") == garbage_before + 1)
        assert friend.call(addr(srv), "echo", 3) == 3
    finally:
        plain.close()
        friend.close()
        srv.stop()


def test_a_tls_client_cannot_talk_to_a_plaintext_port(pki):
    srv = serve(None)
    client = rpc.RpcClient(KEY, connect_timeout=1.0, tls=pki.tls("client"))
    try:
        with pytest.raises(rpc.RpcError):
            client.call(addr(srv), "echo", 1)
        assert srv.seen["casts"] == []
    finally:
        client.close()
        srv.stop()


def test_without_a_ca_the_link_is_encrypted_and_the_key_still_authenticates(pki):
    cert, key = pki.issue("loner")
    srv = serve(load_tls(cert, key, ""))
    good = rpc.RpcClient(KEY, tls=load_tls(cert, key, ""))
    wrong_key = rpc.RpcClient(os.urandom(32), connect_timeout=1.0, tls=load_tls(cert, key, ""))
    try:
        assert good.call(addr(srv), "echo", "hi") == "hi"
        before = drops("handshake without the cluster key")
        with pytest.raises(rpc.RpcError):
            wrong_key.call(addr(srv), "echo", 1, timeout=2)
        assert wait_until(lambda: drops("handshake without the cluster key") == before + 1)
    finally:
        good.close()
        wrong_key.close()
        srv.stop()


def test_tls_flags_follow_flag_env_file_precedence_and_name_bad_values(pki, tmp_path):
    cert, key = pki.issue("cfg")
    other_cert, other_key = pki.issue("cfg2")
    config = tmp_path / "dkron.yml"
    config.write_text(f"rpc-tls-cert: {other_cert}\nrpc-tls-key: {other_key}\n")
    env = {"DKRON_RPC_TLS_CERT": cert, "DKRON_RPC_TLS_CA": str(pki.ca)}
    cfg = load_config({"rpc-tls-key": key}, env, str(config))
    assert (cfg.rpc_tls_cert, cfg.rpc_tls_key, cfg.rpc_tls_ca) == (cert, key, str(pki.ca))
    cfg = load_config({}, {}, str(config))
    assert (cfg.rpc_tls_cert, cfg.rpc_tls_key) == (other_cert, other_key)

    with pytest.raises(ConfigError, match="--rpc-tls-cert.*needs both"):
        load_config({"rpc-tls-cert": cert}, {}, None, search_dirs=[])
    with pytest.raises(ConfigError, match='DKRON_RPC_TLS_CA: no such file "/nowhere.pem"'):
        load_config(
            {"rpc-tls-cert": cert, "rpc-tls-key": key},
            {"DKRON_RPC_TLS_CA": "/nowhere.pem"},
            None,
            search_dirs=[],
        )
    with pytest.raises(ConfigError, match="matching private key"):
        load_config({"rpc-tls-cert": cert, "rpc-tls-key": other_key}, {}, None, search_dirs=[])
    with pytest.raises(ConfigError, match="rpc-tls-ca.*not a PEM CA"):
        load_config(
            {"rpc-tls-cert": cert, "rpc-tls-key": key, "rpc-tls-ca": key}, {}, None, search_dirs=[]
        )
    typo = tmp_path / "typo.yml"
    typo.write_text(f"rpc-tls-certs: {cert}\n")
    with pytest.raises(ConfigError, match="rpc-tls-certs.*rpc-tls-cert"):
        load_config({}, {}, str(typo))


def test_three_servers_elect_and_replicate_over_mutual_tls(pki, tmp_path):
    cluster_key = base64.b64encode(os.urandom(16)).decode()

    def flags(node: str) -> list[str]:
        cert, key = pki.issue(node)
        return [
            "--encrypt", cluster_key,
            "--rpc-tls-cert", cert, "--rpc-tls-key", key, "--rpc-tls-ca", str(pki.ca),
        ]  # fmt: skip

    nodes = [AgentProcess(tmp_path / "s1", *flags("s1"), node="s1", expect=3).start()]
    try:
        seed = seed_of(nodes[0])
        for i in (2, 3):
            node = AgentProcess(
                tmp_path / f"s{i}", *flags(f"s{i}"), "--join", seed, node=f"s{i}", expect=3
            )
            nodes.append(node.start())
        for node in nodes:
            node.client.wait_for(lambda n=node: leader_of(n), timeout=30)
        assert len({leader_of(n) for n in nodes}) == 1
        leader = leader_of(nodes[0])
        follower = next(n for n in nodes if n.node != leader)
        r = follower.client.post("/v1/jobs", shell_job("over-tls", "true"))
        assert r.status == 201, r.text  # forwarded to the leader over TLS
        for node in nodes:
            node.client.wait_for(lambda n=node: n.client.get("/v1/jobs/over-tls").status == 200)
        plain = rpc.RpcClient(base64.b64decode(cluster_key), connect_timeout=0.5)
        with pytest.raises(rpc.RpcError):  # the agents' RPC port speaks TLS only
            plain.call(f"127.0.0.1:{follower.rpc_port}", "agent.launches", timeout=2)
        plain.close()
        for node in nodes:  # no peer of the cluster was ever refused
            assert "TLS handshake refused" not in node.log()
    finally:
        for node in nodes:
            node.stop()

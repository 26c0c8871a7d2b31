"""Item 1: a cluster key always. A lone server makes one at first start and keeps it; other
nodes must be given it; only the loudly logged --dev-insecure turns authentication off, on
loopback only, and /health then says so. Gossip from a node without the key is refused."""

from __future__ import annotations

import base64
import logging
import os
import stat
import subprocess
import sys
import time

import pytest
from agent_support import ROOT, TEST_KEY, AgentProcess, make_config
from hypothesis import given, settings
from hypothesis import strategies as st

from dkron_pkg import rpc
from dkron_pkg.cluster_key import read_key_file, resolve_key
from dkron_pkg.config import ConfigError, load_config
from dkron_pkg.swim_profiles import LOCAL
from dkron_pkg.swim_transport import GossipTransport


def test_a_lone_server_makes_its_key_at_first_start_and_keeps_it(tmp_path):
    data = tmp_path / "data"
    node = AgentProcess(data, key=None).start()
    try:
        kept = data / "cluster.key"
        text = kept.read_text()
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        key = base64.b64decode(text.strip(), validate=True)
        assert len(key) == 16 and text == text.strip() + "\n"  # what `dkron keygen` prints
        for how in ("--encrypt-file", "--encrypt", "DKRON_ENCRYPT", str(kept)):
            assert how in node.log()
        assert node.client.get("/health").json()["security"] == "key"
        addr = f"127.0.0.1:{node.rpc_port}"
        assert rpc.RpcClient(key).call(addr, "node.ping") == {"name": "node1"}
        with pytest.raises(rpc.RpcError):
            rpc.RpcClient(os.urandom(16), connect_timeout=1).call(addr, "node.ping", timeout=2)
    finally:
        node.stop()
    node.start()  # the same key again, not a new one
    try:
        assert kept.read_text() == text
        assert rpc.RpcClient(key).call(f"127.0.0.1:{node.rpc_port}", "node.ping")
    finally:
        node.stop()


def _agent_command(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(ROOT / "dkron.py"), "agent", "--node-name", "n",
            "--data-dir", str(tmp_path / "d"), "--http-addr", "127.0.0.1:0",
            "--bind-addr", "127.0.0.1:0", "--rpc-port", "0", "--profile", "local", *extra]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKRON_")}
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=30, env=env)


def test_nodes_that_cannot_make_a_key_refuse_to_start_without_one(tmp_path):
    agent = _agent_command(tmp_path)  # not a server
    assert agent.returncode == 1
    assert "an agent needs the cluster key" in agent.stdout + agent.stderr
    assert "--encrypt" in agent.stdout + agent.stderr
    joining = _agent_command(tmp_path, "--server", "--join", "127.0.0.1:9")
    assert joining.returncode == 1
    assert "a server that joins others needs the cluster key" in joining.stdout + joining.stderr
    assert not (tmp_path / "d" / "cluster.key").exists()


def test_dev_insecure_is_loud_loopback_only_and_shown_in_health(tmp_path):
    node = AgentProcess(tmp_path / "data", "--dev-insecure", key=None).start()
    try:
        assert node.client.get("/health").json()["security"] == "insecure-dev"
        assert "DEVELOPMENT MODE (--dev-insecure)" in node.log()
        assert not (tmp_path / "data" / "cluster.key").exists()
    finally:
        node.stop()
    wide = _agent_command(tmp_path, "--server", "--dev-insecure", "--bind-addr", "0.0.0.0:0")
    assert wide.returncode == 2
    assert "loopback" in wide.stderr and "0.0.0.0:0" in wide.stderr


def test_a_given_key_wins_over_a_different_kept_key(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cluster.key").write_text(base64.b64encode(b"k" * 16).decode() + "\n")
    with caplog.at_level(logging.INFO, logger="dkron.key"):
        found = resolve_key(make_config(data, encrypt=TEST_KEY), str(data))
    assert found.key == base64.b64decode(TEST_KEY)
    assert "holds a different key and is ignored" in caplog.text
    assert (data / "cluster.key").read_text() == base64.b64encode(b"k" * 16).decode() + "\n"


def test_key_settings_that_contradict_each_other_are_refused(tmp_path):
    key_file = tmp_path / "k"
    key_file.write_text(TEST_KEY + "\n")
    with pytest.raises(ConfigError, match="encrypt or encrypt-file, not both"):
        load_config({"encrypt": TEST_KEY, "encrypt_file": str(key_file)}, {}, None, search_dirs=[])
    with pytest.raises(ConfigError, match="dev-insecure turns the cluster key off"):
        load_config({"dev_insecure": "true"}, {"DKRON_ENCRYPT": TEST_KEY}, None, search_dirs=[])
    key_file.write_text("not a key")
    with pytest.raises(ConfigError, match=f'DKRON_ENCRYPT_FILE: key file "{key_file}": .*base64'):
        load_config({}, {"DKRON_ENCRYPT_FILE": str(key_file)}, None, search_dirs=[])
    cfg = load_config({}, {"DKRON_DEV_INSECURE": "true"}, None, search_dirs=[])
    assert cfg.dev_insecure and cfg.encrypt == ""


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=80), st.sampled_from([TEST_KEY.encode(), b" \n"])))
def test_key_files_of_any_content_give_a_key_or_a_clear_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("key") / "cluster.key"
    path.write_bytes(content)
    try:
        key = read_key_file(str(path))
    except ValueError as e:
        assert str(path) in str(e)
    else:
        assert len(key) in (16, 24, 32)


def test_gossip_without_the_key_cannot_join_a_default_lone_server(tmp_path):
    node = AgentProcess(tmp_path / "data", key=None).start()
    stranger = GossipTransport(
        "stranger",
        "127.0.0.1",
        0,
        tags={"server": "true", "rpc_addr": "127.0.0.1:9", "role": "dkron"},
        profile=LOCAL,
        key=None,
        seeds=[("127.0.0.1", node.gossip_port)],
    )
    stranger.start()
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # the join is retried meanwhile
            names = {m["Name"] for m in node.client.get("/v1/members").json()}
            assert names == {"node1"}, names
            time.sleep(0.2)
        assert {m.name for m in stranger.members()} == {"stranger"}
    finally:
        stranger.stop(leave=False)
        node.stop()

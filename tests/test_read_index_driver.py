"""The Raft driver batches linearizable reads: concurrent reads on a follower share requests to
the leader, and concurrent reads on the leader share ReadIndex rounds; every read sees the
writes acknowledged before it."""

from __future__ import annotations

import threading

from test_raftnode import Cluster, job_cmd, submit_retrying

READERS, READS_EACH = 16, 20


def test_concurrent_reads_share_rounds_and_see_earlier_writes(tmp_path):
    c = Cluster(tmp_path, 3).start()
    try:
        leader = c.leader()
        follower = c.followers()[0]
        submit_retrying(leader, [job_cmd("before-the-reads")])
        missed: list[str] = []

        def reader(server) -> None:
            for _ in range(READS_EACH):
                server.raft.barrier(timeout=10)
                if "before-the-reads" not in server.job_names():
                    missed.append(server.id)

        threads = [
            threading.Thread(target=reader, args=(follower if i % 2 else leader,))
            for i in range(READERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert missed == []
        on_follower, on_leader = follower.raft.read_stats(), leader.raft.read_stats()
        half = READERS // 2 * READS_EACH
        assert on_follower["reads"] >= half and on_leader["reads"] >= half
        assert on_follower["rounds"] < on_follower["reads"] / 2, (on_follower, on_leader)
        assert on_leader["rounds"] < on_leader["reads"] / 2, (on_follower, on_leader)
    finally:
        c.stop()

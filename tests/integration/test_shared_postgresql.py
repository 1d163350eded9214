"""Several server processes sharing one PostgreSQL database."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg

from tests.integration.servers import Server
from tests.integration.test_operations import detach, wait_for_status


def test_three_servers_share_the_queue(server_factory: Callable[..., Server]) -> None:
    # A takes requests and runs nothing; B and C each run two operations at a
    # time, each held for a second, so neither can take all four apps alone.
    front = server_factory("postgresql", workers=0)
    key = (front.data_dir / "master.key").read_text().strip()
    token = front.token
    runners = [
        Server(
            data_dir=front.data_dir.parent / name,
            database_url=front.database_url,
            workers=2,
            env={"DOCKYARD_MASTER_KEY": key, "DOCKYARD_OPERATION_HOLD_SECONDS": "1"},
        ).start()
        for name in ("b", "c")
    ]
    try:
        handles = [f"shared-{n}" for n in range(4)]
        operations: dict[str, list[int]] = {}
        for handle in handles:
            assert front.cli("apps:create", handle).code == 0
        for step in (1, 2):
            for handle in handles:
                operations.setdefault(handle, []).append(
                    detach(front, "config:set", "--app", handle, f"STEP={step}", f"S{step}=x")
                )
        for ids in operations.values():
            for operation_id in ids:
                wait_for_status(front, operation_id, "succeeded", timeout=60)

        for handle, (first, second) in operations.items():
            shown = [
                json.loads(front.cli("operation:show", str(i), "-o", "json").out)
                for i in (first, second)
            ]
            assert shown[1]["started_at"] >= shown[0]["finished_at"]
            config = json.loads(
                runners[0].cli("config", "--app", handle, "-o", "json", token=token).out
            )
            assert config == {
                "version": 2,
                "values": {"STEP": "2", "S1": "x", "S2": "x"},
                "masked": False,
            }

        assert front.database_url is not None
        plain = front.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as conn:
            workers = conn.execute("SELECT DISTINCT worker_id FROM operations").fetchall()
        assert len(workers) == 2
    finally:
        for runner in runners:
            runner.stop()

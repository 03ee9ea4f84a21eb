"""`Checkpoints` on its own: the phases in order, each waiting for the acknowledgement of the
one before, with outboxes on an in-memory cluster that acknowledges only when told (docs:
har_stream/service/checkpoint.py)."""

from __future__ import annotations

from har_stream.core.state import DeviceRegistry, Field
from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.kafka.drivers.memory_producer import MemoryProducer
from har_stream.service.changelog import ChangelogWriter
from har_stream.service.checkpoint import Checkpoints, Phase
from har_stream.service.delivery import Outbox


class FakeOwnership:
    """The two lists a checkpoint takes from the ownership, and where it records snapshots."""

    def __init__(self, devices: list[str]) -> None:
        self.devices = devices
        self.in_flight = None
        self.snapshot_at: dict[str, tuple[int, int]] = {}
        self.dirty: set[str] = set()

    def to_snapshot(self) -> list[tuple[str, int, int]]:
        return [(d, 0, 10) for d in self.devices]

    def to_commit(self) -> dict[int, int]:
        return {0: 10}


def make(devices: int = 5):
    registry = DeviceRegistry({"n": Field((), "<i8")})
    ids = [f"d{i}" for i in range(devices)]
    for d in ids:
        registry.slot(d)
    cluster = MemoryCluster(auto_acknowledge=False, waits=False)
    for topic in ("activity", "dlq"):
        cluster.create_topic(topic)
    cluster.create_topic("log", configs={"cleanup.policy": "compact"})
    results, snapshots = cluster.producer(), cluster.producer()
    outbox, snapshot_outbox = Outbox(results, "dlq"), Outbox(snapshots, "dlq")
    committed: list[dict[int, int]] = []
    held: list[BaseException] = []
    now = [0.0]
    checkpoints = Checkpoints(
        outbox, snapshot_outbox, ChangelogWriter(snapshot_outbox, "log"), FakeOwnership(ids),
        registry, lambda: now[0], produce_timeout_s=30.0,
        delivered=lambda box, epoch, what: box.delivered(epoch), hold=held.append,
        held=lambda: bool(held), commit=committed.append)
    return checkpoints, results, snapshots, outbox, committed, held, now


def answer(producer: MemoryProducer) -> None:
    """The cluster acknowledges everything `producer` sent; its callbacks run."""
    producer.cluster.acknowledge(producer=producer)
    producer.serve()


def pending(producer: MemoryProducer, topic: str = "log") -> int:
    return producer.cluster.pending(topic)


def test_the_phases_run_in_order_each_after_the_acknowledgement_of_the_one_before() -> None:
    checkpoints, results, snapshots, outbox, committed, _, _ = make()
    outbox.send("activity", key=b"d0", value=b"result")  # output sent before the checkpoint
    checkpoints.begin()
    assert checkpoints.current is not None and checkpoints.current.phase is Phase.RESULTS
    assert not checkpoints.advance() and pending(snapshots) == 0, "no snapshot before results"
    answer(results)
    assert not checkpoints.advance()
    assert checkpoints.current.phase is Phase.ACKNOWLEDGE and pending(snapshots) == 5
    assert committed == [], "nothing committed before the snapshots are acknowledged"
    answer(snapshots)
    assert checkpoints.advance() and committed == [{0: 10}] and checkpoints.current is None
    assert set(checkpoints.ownership.snapshot_at) == {f"d{i}" for i in range(5)}


def test_snapshots_go_out_in_bounded_slices() -> None:
    checkpoints, _, snapshots, _, committed, _, _ = make(devices=7)
    checkpoints.begin()
    assert not checkpoints.advance(limit=3) and pending(snapshots) == 3
    assert checkpoints.current.phase is Phase.SNAPSHOTS and checkpoints.sending()
    assert not checkpoints.advance(limit=3) and not checkpoints.advance(limit=3)
    assert pending(snapshots) == 7 and checkpoints.current.phase is Phase.ACKNOWLEDGE
    answer(snapshots)
    assert checkpoints.advance(limit=3) and committed == [{0: 10}]


def test_a_silent_broker_holds_once_and_an_answering_one_never() -> None:
    checkpoints, results, _, outbox, _, held, now = make()
    outbox.send("activity", key=b"d0", value=b"result")
    checkpoints.begin()
    now[0] = 31.0
    assert not checkpoints.advance() and len(held) == 1
    now[0] = 62.0
    assert not checkpoints.advance() and len(held) == 1, "held once"
    answer(results)
    assert not checkpoints.advance()
    assert checkpoints.current.phase is Phase.ACKNOWLEDGE


def test_abandoning_returns_the_devices_to_the_changed_set() -> None:
    checkpoints, results, _, _, committed, _, _ = make(devices=4)
    checkpoints.begin()
    answer(results)
    checkpoints.advance(limit=2)
    checkpoints.abandon()
    assert checkpoints.current is None and committed == []
    assert checkpoints.ownership.dirty == {"d0", "d1", "d2", "d3"}

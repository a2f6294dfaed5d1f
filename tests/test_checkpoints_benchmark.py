"""The load benchmark's shard placement (disk first, the rest in /dev/shm): the one piece of logic it has."""

from benchmarks.load_checkpoint import plan_placement

GB = 10**9
GIB = 2**30
# The 8 fp32 shards of a full-size LingBot expert (benchmarks/results/load_checkpoint_h100.json).
SHARDS = [9311965184, 9125509120, 9408563200, 9125502976, 9408563200, 9230346240, 9335183360, 9231698176]


def test_disk_first_then_overflow():
    # The H100 box: about 61 GB free on the disk (6 shards + the 4 GiB margin), /dev/shm larger than 2 shards.
    assert plan_placement(SHARDS, 8, disk_free=61 * GB, overflow_free=30 * GB) == ["disk"] * 6 + ["shm"] * 2
    assert plan_placement(SHARDS, 8, disk_free=200 * GB, overflow_free=30 * GB) == ["disk"] * 8
    assert plan_placement(SHARDS, 3, disk_free=61 * GB, overflow_free=30 * GB) == ["disk"] * 3


def test_without_overflow_stops_where_the_disk_is_full():
    assert plan_placement(SHARDS, 8, disk_free=61 * GB) == ["disk"] * 6  # the old mode: extrapolate from 6
    assert plan_placement(SHARDS, 1, disk_free=61 * GB) == ["disk"]
    assert plan_placement(SHARDS, 8, disk_free=9 * GB) == []  # not even one shard (+ margin)


def test_overflow_capacity_and_disk_limit():
    # An overflow with room for 1 shard (+ its 1 GiB margin) only: 7 placed, the caller refuses a strict run.
    assert plan_placement(SHARDS, 8, disk_free=61 * GB, overflow_free=11 * GB) == ["disk"] * 6 + ["shm"]
    assert plan_placement(SHARDS, 8, disk_free=200 * GB, overflow_free=60 * GB, disk_shards=5) == (
        ["disk"] * 5 + ["shm"] * 3
    )
    assert plan_placement(SHARDS, 2, disk_free=200 * GB, overflow_free=30 * GB, disk_shards=0) == ["shm"] * 2
    # Margins are exact: a shard that fits only by eating the margin goes to the overflow.
    assert plan_placement([10], 1, disk_free=10 + GIB, overflow_free=10 + GIB, disk_margin=GIB + 1) == ["shm"]

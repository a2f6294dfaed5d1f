"""A ring buffer of training examples on the device, filled from game workers by a background thread.

The ViZDoom workers play about 750-800 frames/s on the GPU box (14 processes), which is what the VAE and the light
decoder consumed per second there: the small models wait for data. Drawing each step's batch from the last
``capacity`` clips instead uses every played clip a few times and lets the GPU run at its own speed; newly played
clips replace the oldest as they arrive. The price: with a buffer, which clips a step sees depends on thread timing,
so a resumed run continues from the same weights and optimizer state but not with bit-identical batches.

Where storing costs GPU time (the teacher VAE-encodes every clip it stores) the workers can outrun the trainer: on
the H100 the teacher encoded ~130 clips/s and trained at 2.5 steps/s, using each clip about once. ``reuse`` caps
what is stored to one new example per ``reuse`` drawn, so the encoder's share of the GPU stays small.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from world_model.transfer import to_device_async

Example = dict[str, Any]  # name -> tensor [B, ...] (stored on the device) or list of length B (e.g. captions)


class ReplayBuffer:
    """``transform(batch) -> Example`` picks (and e.g. encodes) what is stored from each incoming batch.

    ``refill(min_size)`` blocks until ``min_size`` examples are held, then takes the batches waiting (with
    ``reuse``, only while fewer than one new example per ``reuse`` drawn has been stored); ``sample(n, generator)``
    draws ``n`` stored examples uniformly; ``close()`` stops the thread and closes the
    batch iterator in it (which stops the game workers: left to the interpreter's exit, the workers are killed and
    their engine processes outlive them, holding stdout). ``seen`` counts examples ever added.
    """

    def __init__(
        self,
        batches: Iterator[dict[str, Any]],
        capacity: int,
        device: torch.device | str,
        transform: Callable[[dict[str, Any]], Example],
        reuse: float | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        if reuse is not None and reuse < 1:
            raise ValueError(f"replay reuse must be >= 1 (draws per stored example) or None, got {reuse}")
        self.reuse, self.drawn = reuse, 0
        self.capacity, self.device, self.transform = capacity, torch.device(device), transform
        self.store: Example = {}
        self.size, self.pos, self.seen = 0, 0, 0
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pull, args=(batches,), daemon=True)
        self._thread.start()

    def _pull(self, batches) -> None:
        try:
            for batch in batches:
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        finally:
            if hasattr(batches, "close"):
                batches.close()

    @torch.no_grad()
    def _add(self, batch: dict[str, Any]) -> None:
        example = self.transform(batch)
        n = len(next(iter(example.values())))
        if not self.store:
            self.store = {
                k: torch.empty((self.capacity, *v.shape[1:]), dtype=v.dtype, device=self.device)
                if torch.is_tensor(v)
                else [None] * self.capacity
                for k, v in example.items()
            }
        for i in range(n):
            for k, v in example.items():
                self.store[k][self.pos] = v[i]
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
        self.seen += n

    def refill(self, min_size: int) -> None:
        """Hold at least ``min_size`` examples, then take the batches already waiting (a bounded number: the game
        workers must not keep the trainer adding forever)."""
        while self.size < min(min_size, self.capacity):
            try:
                self._add(self._queue.get(timeout=600))
            except queue.Empty:
                raise RuntimeError("no clips from the game workers for 10 minutes") from None
        for _ in range(self._queue.qsize()):
            if self.reuse is not None and self.seen * self.reuse >= self.drawn:
                return
            try:
                self._add(self._queue.get_nowait())
            except queue.Empty:
                return

    def sample(self, batch_size: int, generator: torch.Generator) -> Example:
        idx = torch.randint(0, self.size, (batch_size,), generator=generator)
        self.drawn += batch_size
        dev_idx = to_device_async(idx, self.device)
        return {k: v[dev_idx] if torch.is_tensor(v) else [v[i] for i in idx.tolist()] for k, v in self.store.items()}

    def close(self, timeout: float = 120.0) -> None:
        self._stop.set()
        self._thread.join(timeout)


def replayed_videos(
    batches: Iterable[dict[str, Any]],
    capacity: int,
    batch_size: int,
    device: torch.device | str,
    seed: int,
    channels_last: bool = False,
) -> tuple[Callable[[], torch.Tensor], ReplayBuffer]:
    """``(draw, replay)`` for trainers of pixels (the VAE, the light decoder): ``draw()`` -> ``batch_size`` clips
    ``[B, 3, F, H, W]`` (float32) from the last ``capacity`` played (stored fp16), each mirrored left-right at
    random; ``replay`` is the buffer behind it (close it to stop the game workers)."""
    replay = ReplayBuffer(iter(batches), capacity, device, lambda b: {"video": b["video"].half()})
    gen = torch.Generator().manual_seed(seed)

    def draw() -> torch.Tensor:
        replay.refill(min_size=batch_size * 4)
        video = replay.sample(batch_size, gen)["video"].float()
        mirror = (torch.rand(video.shape[0], generator=gen) < 0.5).to(video.device)
        video = torch.where(mirror[:, None, None, None, None], video.flip(-1), video)
        return video.contiguous(memory_format=torch.channels_last_3d) if channels_last and video.is_cuda else video

    return draw, replay


def replayed_video_stream(
    batches: Iterable[dict[str, Any]], capacity: int, batch_size: int, device: torch.device | str, seed: int
) -> Iterator[torch.Tensor]:
    """:func:`replayed_videos` as an endless iterator of clips; closing it closes the buffer."""
    draw, replay = replayed_videos(batches, capacity, batch_size, device, seed)
    try:
        while True:
            yield draw()
    finally:
        replay.close()

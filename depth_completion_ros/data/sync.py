"""Offline approximate-time pairing with the same policy as ROS 2 message_filters'
`ApproximateTimeSynchronizer` (Python implementation), so that a bag evaluated offline pairs its messages
exactly as the node pairs them online.

The policy, per arriving message (in arrival order):
1. it is stored in its input's queue keyed by its header stamp; a queue longer than `queue_size` forgets
   its oldest stamp;
2. for every *other* input, the stored stamps within `slop` of the new stamp are candidates, closest first;
   if some input has none, nothing fires;
3. the candidate combinations are tried in order (closest first, itertools.product order); the first whose
   stamps (the new one included) span strictly less than `slop` fires, and its messages leave their queues.
Messages forgotten by rule 1 or never used are drops: `dropped` counts them per input.
"""
from __future__ import annotations

import itertools
from typing import Any


class ApproximateTimePairing:
    """Feed `(input_index, stamp_ns, message)` in arrival order; synchronized tuples come out of `add`."""

    def __init__(self, inputs: int, queue_size: int = 10, slop_s: float = 0.05):
        if inputs < 2:
            raise ValueError(f"pairing needs at least 2 inputs, got {inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop_s > 0:
            raise ValueError(f"slop must be > 0 seconds, got {slop_s}")
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop_s * 1e9))
        self.queues: list[dict[int, Any]] = [{} for _ in range(inputs)]
        self.received = [0] * inputs
        self.evicted = [0] * inputs
        self.matched = 0

    def add(self, index: int, stamp_ns: int, message: Any) -> tuple[Any, ...] | None:
        """Store one message; return the synchronized messages (one per input, in input order) if a set fires."""
        if not 0 <= index < len(self.queues):
            raise ValueError(f"input index {index} out of range (0..{len(self.queues) - 1})")
        queue = self.queues[index]
        self.received[index] += 1
        if stamp_ns in queue:
            self.evicted[index] += 1  # a second message with the same stamp replaces the first
        queue[stamp_ns] = message
        while len(queue) > self.queue_size:
            del queue[min(queue)]
            self.evicted[index] += 1

        candidates = []
        for other, other_queue in enumerate(self.queues):
            if other == index:
                continue
            near = sorted((abs(s - stamp_ns), s) for s in other_queue if abs(s - stamp_ns) <= self.slop_ns)
            if not near:
                return None
            candidates.append([s for _, s in near])
        for combination in itertools.product(*candidates):
            stamps = list(combination)
            stamps.insert(index, stamp_ns)
            if max(stamps) - min(stamps) < self.slop_ns:
                matched = tuple(q.pop(s) for q, s in zip(self.queues, stamps))
                self.matched += 1
                return matched
        return None

    def pending(self) -> list[int]:
        """Messages still waiting in each queue (they count as dropped when the input ends)."""
        return [len(q) for q in self.queues]

    def dropped(self) -> list[int]:
        """Per input: messages received that did not (yet) become part of a synchronized set."""
        return [r - self.matched for r in self.received]

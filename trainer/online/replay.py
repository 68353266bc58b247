"""The replay sample: older examples mixed into each fine-tuning round so a round on a few
new events does not drag the model towards them alone. A uniform reservoir sample of every
example seen (Vitter's algorithm R), kept in the checkpoint so it survives restarts."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from trainer.learn.examples import UNKNOWN_OWNER, Examples

_FIELDS = ("items", "types", "labels", "kinds", "users", "owners")
_SINCE = {"owners"}  # fields a checkpoint written before them lacks


class ReplayBuffer:
    """At most ``capacity`` examples, each seen example kept with equal probability."""

    def __init__(self, *, capacity: int, history_len: int, seed: int = 0) -> None:
        self.capacity = capacity
        self.examples = Examples.empty(history_len)
        self.seen = 0
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.examples)

    def add(self, new: Examples) -> None:
        """Offer every example of ``new`` to the reservoir."""
        if self.capacity == 0 or len(new) == 0:
            self.seen += len(new)
            return
        room = self.capacity - len(self.examples)
        head = new.take(np.arange(min(room, len(new))))
        parts = [self.examples, head] if len(head) else [self.examples]
        self.examples = Examples.concat(parts)
        self.seen += len(head)
        rest = len(new) - len(head)
        if rest <= 0:
            return
        # Example number k (1-based, counting all seen) replaces a random slot with p = cap/k.
        k = self.seen + 1 + np.arange(rest)  # (R,)
        slots = (self._rng.random(rest) * k).astype(np.int64)  # uniform in [0, k)
        keep = np.flatnonzero(slots < self.capacity)
        # Later replacements of the same slot win, as in the sequential algorithm.
        _, last = np.unique(slots[keep][::-1], return_index=True)
        chosen = keep[::-1][last]  # positions in the rest, one per slot
        for name in _FIELDS:
            getattr(self.examples, name)[slots[chosen]] = getattr(new, name)[chosen + len(head)]
        self.seen += rest

    def forget(self, keep: npt.NDArray[np.bool_]) -> int:
        """Keep only the examples ``keep`` (E,) marks (erasures, withdrawals); how many went.
        ``seen`` is left as it is: later examples keep their chance of replacing a slot."""
        dropped = int(len(self.examples) - np.count_nonzero(keep))
        if dropped:
            self.examples = self.examples.take(np.flatnonzero(keep))
        return dropped

    def sample(self, n: int) -> Examples:
        """``n`` examples drawn without replacement (all of them if fewer)."""
        if n >= len(self.examples):
            return self.examples
        return self.examples.take(self._rng.choice(len(self.examples), size=n, replace=False))

    def state(self) -> dict[str, torch.Tensor | int]:
        """Plain tensors for the checkpoint (loadable with ``torch.load(weights_only=True)``)."""
        out: dict[str, torch.Tensor | int] = {
            n: torch.from_numpy(np.ascontiguousarray(getattr(self.examples, n))) for n in _FIELDS
        }
        out["seen"] = self.seen
        return out

    @classmethod
    def from_state(
        cls, state: dict[str, torch.Tensor | int], *, capacity: int, history_len: int, seed: int = 0
    ) -> ReplayBuffer:
        """A buffer from ``state()``; an incompatible or missing state gives an empty one."""
        buffer = cls(capacity=capacity, history_len=history_len, seed=seed)
        tensors = [state.get(n) for n in _FIELDS if n not in _SINCE]
        if not all(isinstance(t, torch.Tensor) for t in tensors):
            return buffer
        arrays = [t.numpy().copy() for t in tensors if isinstance(t, torch.Tensor)]
        if arrays[0].ndim != 2 or arrays[0].shape[1] != history_len:
            return buffer
        owners = state.get("owners")
        if isinstance(owners, torch.Tensor) and owners.shape[0] == arrays[0].shape[0]:
            arrays.append(owners.numpy().astype(np.int64))
        else:  # whose they are is unknown: the first erasure drops them all (loop.py)
            arrays.append(np.full(arrays[0].shape[0], UNKNOWN_OWNER, np.int64))
        examples = Examples(*arrays)
        if len(examples) > capacity:
            examples = examples.take(np.arange(capacity))
        buffer.examples = examples
        buffer.seen = max(int(state.get("seen", 0)), len(examples))
        return buffer

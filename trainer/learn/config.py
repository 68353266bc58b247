"""The training configuration: the objective and its hyper-parameters, one frozen object
shared by ``veto bootstrap``, ``veto train`` and ``veto eval``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from veto.errors import ConfigError
from veto.settings import TrainerSettings

# ssm           sampled softmax on likes; dislikes are input features only
# ssm+ntr       + the Not-to-Recommend term on dislikes (the default, Wang et al. 2023)
# bsl           bilateral softmax (Wu et al. 2024) on likes
# bsl+ntr       bsl + the Not-to-Recommend term
# ssm-neg       dislikes as extra softmax negatives of the user's likes (the paper's alternative)
# ssm-nodislike dislikes dropped entirely: neither label nor input
CONTEXTS = ("causal", "bag", "mix")
_DEPLOYED = TrainerSettings.model_fields
# The fields a deployment sets through TrainerSettings.
_FROM_SETTINGS = ("objective", "dim", "history_len", "context", "threads")
OBJECTIVES = ("ssm", "ssm+ntr", "bsl", "bsl+ntr", "ssm-neg", "ssm-nodislike")


@dataclass(frozen=True)
class TrainConfig:
    """Model size, objective and optimiser settings; validated on construction."""

    # What a deployment also sets (VETO_OBJECTIVE, ...): their defaults are defined once, there.
    objective: str = _DEPLOYED["objective"].default
    dim: int = _DEPLOYED["dim"].default
    history_len: int = _DEPLOYED["history_len"].default
    batch_size: int = 1024
    epochs: int = 5
    lr: float = 3e-3  # Adam, the dense user-tower parameters
    emb_lr: float = 0.05  # row-wise Adagrad, the item (and user) embedding tables
    tau: float = 0.1  # softmax temperature on cosine (SSM paper: 0.1-0.22)
    bsl_tau1: float = 1.0  # BSL temperature of the positive side (large -> plain softmax)
    n_sampled: int = 1024  # uniformly sampled negatives per batch, shared by its rows
    ntr_weight: float = 1.0  # w in -w log(1 - p)
    click_weight: float = 0.0  # softmax weight of a click label; 0 = clicks are input only
    # The input of an example: "causal" (the history before the event), "bag" (the whole
    # history but the event, as the service encodes a user) or "mix" (trainer.learn.examples).
    context: str = _DEPLOYED["context"].default
    use_dislike_feature: bool = True  # False: dislikes removed from the input histories
    # The encoder's dislike channel (veto.encoder): the mean disliked vector, weight <= 0,
    # starting at -dislike_init in a fresh model.
    dislike_channel: bool = True
    dislike_init: float = 0.05  # 0.5 cost 12 % of Recall@20 on ML-100K for no AUC gain
    user_embedding: bool = False  # a per-user embedding for users seen in training
    freq_alpha: float = 0.01  # online decay of the label counts per batch (logQ's q)
    seed: int = 0
    threads: int = _DEPLOYED["threads"].default  # torch threads

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ConfigError(f"context {self.context!r} is not one of {', '.join(CONTEXTS)}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        positive_ints = ("dim", "history_len", "batch_size", "threads")
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0 or self.n_sampled < 0:
            raise ConfigError("epochs and n_sampled must be >= 0")
        for name in ("lr", "emb_lr", "tau", "bsl_tau1", "dislike_init"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.ntr_weight < 0 or self.click_weight < 0:
            raise ConfigError("ntr_weight and click_weight must be >= 0")
        if not 0 < self.freq_alpha <= 1:
            raise ConfigError(f"freq_alpha must be in (0, 1], got {self.freq_alpha}")

    @property
    def uses_ntr(self) -> bool:
        return self.objective.endswith("+ntr")

    @property
    def uses_bsl(self) -> bool:
        return self.objective.startswith("bsl")

    @property
    def dislike_negatives(self) -> bool:
        return self.objective == "ssm-neg"

    @property
    def dislike_input(self) -> bool:
        """Whether dislikes stay in the input histories."""
        return self.use_dislike_feature and self.objective != "ssm-nodislike"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: TrainerSettings, **overrides: Any) -> TrainConfig:
        """The deployed configuration (``VETO_*``), with ``overrides`` (e.g. a version's dim)."""
        deployed = {name: getattr(settings, name) for name in _FROM_SETTINGS}
        return cls(**{**deployed, **overrides})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys (from a newer trainer) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

"""What a training run is told: how to fit (`FitSettings`) and the stateful model's shape
(`StatefulConfig`).

Each default is written here once: they are the defaults of `har-stream train` (its parser
takes them from these classes, and `TrainOptions` holds one of each), chosen as
docs/MODELS.md tells. No Keras here, so the CLI can build its parser without TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from har_stream.training.catalog import STATEFUL_FILTERS, STATEFUL_KERNEL


@dataclass(frozen=True, slots=True)
class FitSettings:
    """Training hyperparameters (chosen on the validation users, then by cross-validation)."""

    epochs: int = 40
    patience: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    sequence_length: int = 48
    sequences_per_batch: int = 8
    with_transition: bool = True
    """Stateful: a 7th class TRANSITION for windows made mostly of postural transitions."""
    augment: bool = True
    yaw_degrees: float = 180.0
    """> 0: augmentation also turns each sequence about device x by up to this angle."""
    yaw_share: float = 0.5
    """Share of the sequences so turned."""
    ema_decay: float = 0.99
    """> 0: validate, select and ship an exponential moving average of the weights."""
    verbose: int = 1
    """Keras progress output (0 silent, 1 bars, 2 a line per epoch); 0 also hides the
    progress bars of data preparation."""


@dataclass(frozen=True, slots=True)
class StatefulConfig:
    """Shape of the stateful model; every field was chosen on validation users."""

    state_size: int = 64
    filters: tuple[int, ...] = STATEFUL_FILTERS
    """Filters of each convolution block (the encoder's cost grows with them)."""
    kernel: int = STATEFUL_KERNEL
    embedding: int = 96
    dropout: float = 0.3

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

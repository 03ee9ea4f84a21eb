"""The vectorised pipeline agrees with the plain per-sample transcription of the same chain."""

import numpy as np

from har_stream.bench.naive import NaiveDevice
from har_stream.core.pipeline import Pipeline, replay


def test_vectorised_pipeline_matches_the_per_sample_baseline() -> None:
    rng = np.random.default_rng(11)
    acc = np.cumsum(rng.normal(0, 0.05, (700, 3)), axis=0) + [0.1, 0.2, 0.95]
    samples = np.concatenate([acc, rng.normal(0, 0.4, (700, 3))], axis=1).astype(np.float32)
    fast = replay(samples[:, :3], samples[:, 3:], chunk=50)
    rows = samples.tolist()
    naive = NaiveDevice(Pipeline().filters, rows[0])
    slow = [w for row in rows for w in naive.push(row)]
    assert len(slow) == len(fast) == 9
    # float64 Python arithmetic against float32 numpy: equal to float32 precision
    np.testing.assert_allclose(fast.data, np.asarray(slow, np.float32), rtol=1e-4, atol=5e-5)

"""Does int8 hold on the cross-validation folds? `python -m har_stream.training.cv_precision
[SETTING] [RESULTS]`.

Rebuilds each fold's model of a setting from the weights `train --cv` kept (and the fold's
standardisation, recomputed from its inner training users), converts it to the served
LiteRT flatbuffer in float32 and in dynamic-range int8, and scores both on the fold's
held-out users as the service runs them (streams, state carried). Float32 must reproduce
the recorded out-of-fold accuracy; int8 is judged against it fold by fold.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from har_stream.serving.engine import LiteRTModel
from har_stream.training import dataset
from har_stream.training.cv import FOLD_SEED, OOF_DIR, read_results
from har_stream.training.evaluate import benchmark_scores, stream_probs
from har_stream.training.export import DYNAMIC_RANGE_INT8, FLOAT32, to_tflite
from har_stream.training.hapt import load_hapt
from har_stream.training.settings import StatefulConfig
from har_stream.training.stateful import build_stateful
from har_stream.training.train import class_names
from har_stream.training.windows import make_windows


def main(setting: str, results: Path, data: Path) -> str:
    hapt = load_hapt(data)
    users = sorted(set(hapt.users()) - set(hapt.test_users))
    windows = make_windows(hapt.of_users(users))
    classes = class_names(True)
    rows = []
    for record in read_results(results):
        if record["name"] != setting:
            continue
        settings = record["settings"]
        held = record["held_out_users"]
        inner = dataset.split_users([u for u in users if u not in held], (),
                                    settings["inner_validation_users"],
                                    seed=FOLD_SEED + record["fold"])
        mean, std = dataset.standardisation(windows.of_users(inner.train))
        config = StatefulConfig(state_size=settings["state_size"],
                                filters=tuple(settings["filters"]), kernel=settings["kernel"])
        step = build_stateful(mean, std, len(classes), config).step
        step.load_weights(results.parent / OOF_DIR /
                          f"{record['key']}-s{record['seed']}-f{record['fold']}.weights.h5")
        held_out = windows.of_users(held)
        scores = [benchmark_scores(stream_probs(LiteRTModel(
            to_tflite(step, precision), classes, config.state_size, precision), held_out),
            held_out)["accuracy"] for precision in (FLOAT32, DYNAMIC_RANGE_INT8)]
        rows.append((*scores, record["accuracy"]))
    table = np.array(rows)
    reproduced = np.max(np.abs(table[:, 0] - table[:, 2]))
    return (f"{setting}: {len(rows)} fold runs; mean accuracy float32 {table[:, 0].mean():.4%}, "
            f"int8 {table[:, 1].mean():.4%}; largest int8 loss in a fold "
            f"{np.max(table[:, 0] - table[:, 1]):.4%}; float32 against the recorded "
            f"out-of-fold accuracy: largest difference {reproduced:.5f}")


if __name__ == "__main__":
    from har_stream.training.hapt import default_data_path

    print(main(sys.argv[1] if len(sys.argv) > 1 else "yaw180-half",
               Path(sys.argv[2]) if len(sys.argv) > 2 else Path("runs/cv/results.jsonl"),
               default_data_path()))

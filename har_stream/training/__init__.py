"""Training-side code: HAPT loading, labelled windows through the serving pipeline, training,
evaluation and model cards.

Imports go one way, from the commands down to the data (an import-linter contract keeps the
modules free of circles; what two modules share lives in one below both):
- commands: `commands` (`train`, `data`; registers the others) over `model_commands`
  (`evaluate`, `model export`, `model calibrate`);
- runs: `train` (`TrainOptions`, `train_model`), `zoo`, `cv`, `cv_report`, `cv_precision`,
  and the studies `transition_defaults` and `placement`;
- the model directory and fitting: `serving` (export, calibration, evaluation of a model
  directory's served flatbuffer), `fit` (Keras loops), `stateful`, `zoo_models`, `augment`,
  `export`, `keras_file`;
- below them: `evaluate`, `card`, `dataset`, `windows`, `labels`, `metrics`, `hapt` (the
  recordings and where they are found), `download`, `settings` (`FitSettings`,
  `StatefulConfig`) and `catalog`.

Outside this package it imports the core, `har_stream.serving` and `har_stream.extras` (and
`zoo`, run as a script, the CLI). No command module imports TensorFlow when it is imported:
the Keras modules (`fit`, `stateful`, `zoo_models`) are imported inside the functions that
need them, `export` and `keras_file` import TensorFlow inside theirs, so `har-stream --help`
does not load it.
"""

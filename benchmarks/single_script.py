"""The hand-written baseline: the pipeline's work in one process, with no stages.

Reads the CSV, cleans and encodes it with the same functions, splits it the same way,
builds and fits the same model for the same epochs and batch size, and scores the test
split, but with no validation, no Parquet hand-offs, no DVC, no DVCLive and no reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    start = time.perf_counter()

    import keras

    from stages.common.config import load_params
    from stages.data.encoding import TARGET, targets, to_inputs
    from stages.data.preparation import prepare_frame, spec_from_schema
    from stages.data.schema import load_schema
    from stages.data.sources import read_source
    from stages.data.splitting import split_frame
    from stages.data.transform import clean_frame
    from stages.evaluation.metrics import classification_metrics
    from stages.model.build import make_model, model_vocabularies
    from stages.model.inference import predict_proba

    params = load_params(args.params)
    schema = load_schema(params.dataset.schema_path)
    spec = spec_from_schema(schema, target=params.dataset.target)
    raw = read_source(params=params.collect)
    prepared, _ = prepare_frame(
        clean_frame(raw, missing_tokens=params.prepare.missing_tokens, schema=schema),
        spec=spec,
        drop_duplicates=params.prepare.drop_duplicates,
    )
    splits = split_frame(
        prepared,
        target=TARGET,
        validation=params.split.validation,
        test=params.split.test,
        seed=params.dataset.seed,
    )
    keras.utils.set_random_seed(params.dataset.seed)
    y_train, y_val, y_test = (targets(splits[name], spec) for name in splits)
    steps = -(-len(y_train) // params.train.batch_size)
    model, trainer = make_model(
        splits["train"],
        y_train,
        spec=spec,
        params=params.train,
        seed=params.dataset.seed,
        steps_per_epoch=steps,
    )
    vocabularies = model_vocabularies(model)
    x_train, x_val, x_test = (to_inputs(splits[name], spec, vocabularies) for name in splits)
    trainer.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=params.train.epochs,
        batch_size=params.train.batch_size,
        verbose=0,
    )
    metrics = classification_metrics(y_test, predict_proba(model, x_test))
    print(json.dumps({"seconds": time.perf_counter() - start, "accuracy": metrics["accuracy"]}))


if __name__ == "__main__":
    main()

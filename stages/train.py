"""train: fit the Keras model on the train split, checking the validation split every epoch.

Reads data/split/train.parquet, data/split/validation.parquet and data/prepared/encoding.json.
Writes models/model.keras (the network on raw columns; on the JAX backend the network
alone), models/network.keras (the network on encoded rows, which evaluate and predict
load), the per-epoch history through DVCLive (reports/train/metrics.json
and reports/train/plots/metrics/{train,eval}/*.tsv) and reports/train/report.json with the
best epoch, the epochs where validation accuracy trailed training accuracy by more than
`train.overfit_gap`, the seed, the versions and the device.

Scaling is learned here, from train rows only (at most `train.sample_rows` of them, drawn
by the seed), and saved inside the model. A train split of more than `train.shuffle_rows`
rows streams from its row groups instead of being read whole (stages/training/stream.py);
at most `train.validation_rows` validation rows, drawn by the seed, are checked each epoch.
After the fit, a classifier's calibration and (two classes) its decision threshold are
fitted on the validation rows and stored in its head (stages/model/calibration.py); the
report gives them with the validation log loss and calibration error before and after.
"""

from __future__ import annotations

from pathlib import Path

import keras

from stages.common import paths
from stages.common.config import Params
from stages.common.io import say, staging_dir, write_json
from stages.common.runtime import Cluster, join_cluster, leave_cluster, tensorflow_version
from stages.data.drift import train_profile
from stages.data.encoding import EncodingSpec
from stages.model.files import save_model
from stages.training.callbacks import best_epoch_marker
from stages.training.loop import serving, train_model
from stages.training.resume import backup_key
from stages.training.stream import TrainRows


def inputs_key(params: Params) -> str:
    """The backup key of this run: its input files, params, code and library versions."""
    return backup_key(
        files=[paths.split_table("train"), paths.split_table("validation"), paths.ENCODING_SPEC],
        settings={
            "train": params.train.model_dump(),
            "seed": params.dataset.seed,
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "tensorflow": tensorflow_version(),
        },
    )


def run(params: Params, cluster: Cluster | None = None) -> None:
    """The train command: fit on the train split, write the model and the reports.

    An interrupted run leaves a backup (paths.TRAIN_BACKUP) that the next run with the same
    inputs resumes from; the backup is deleted once the outputs are in place.
    """
    if cluster is not None and cluster.num_processes > 1:
        join_cluster(cluster)
    try:
        _run(params, cluster)
    finally:
        leave_cluster(cluster)


def _run(params: Params, cluster: Cluster | None) -> None:
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    train_rows = TrainRows.from_parquet(paths.split_table("train"))
    validation_split = TrainRows.from_parquet(paths.split_table("validation"))
    validation_rows = validation_split.sample(
        params.train.validation_rows, seed=params.dataset.seed
    )
    # From the sample the model's statistics are fitted on: read once, and let go once fitted.
    sample = train_rows.sample(params.train.sample_rows, seed=params.dataset.seed)
    profile = train_profile(sample, spec) | {"rows": train_rows.rows}
    del sample
    with staging_dir(paths.TRAIN_DIR) as live_dir:
        model, report = train_model(
            train=train_rows,
            validation=validation_rows,
            spec=spec,
            params=params.train,
            seed=params.dataset.seed,
            live_dir=live_dir,
            backup_path=Path(paths.TRAIN_BACKUP),
            backup_key=inputs_key(params),
            cluster=cluster,
        )
        report["validation_split_rows"] = validation_split.rows
        write_json(report, live_dir / Path(paths.TRAIN_REPORT).name)
        best_epoch_marker(
            report["history"], best=report["best_epoch"], score=report["overfit_score"]
        ).to_csv(live_dir / "plots" / "best_epoch.tsv", sep="\t", index=False)
        save_model(serving(model, spec, params.prepare.missing_tokens), paths.MODEL)
        save_model(model, paths.NETWORK)
        write_json(profile, paths.PROFILE)
    Path(paths.TRAIN_BACKUP).unlink(missing_ok=True)
    for name, reason in report["suspected_leaks_excluded"].items():
        say("train", f"warning: column '{name}' is not a model input: {reason}")
    best = report["best"]
    score = report["overfit_score"]
    say(
        "train",
        f"{report['train_rows']:,} rows, {report['epochs_run']} epochs, best epoch "
        f"{report['best_epoch']} (val {score} {best.get('val_' + score, float('nan')):.4f}), "
        f"{len(report['overfit_epochs'])} epoch(s) flagged for overfitting -> {paths.MODEL}",
    )

"""Where every stage reads and writes, relative to the repository root.

dvc.yaml declares the same paths; tests/test_layout.py checks that the two agree.
"""

PARAMS = "params.yaml"

RAW_TABLE = "data/raw/table.parquet"
COLLECT_REPORT = "reports/collect/report.json"

VALIDATED_TABLE = "data/validated/table.parquet"
VALIDATE_REPORT = "reports/validate/report.json"
VALIDATE_FAILURES = "reports/validate/failure_cases.csv"
VALIDATE_METRICS = "reports/validate/metrics.json"
QUARANTINE_TABLE = "data/validated/quarantine.parquet"

PREPARED_TABLE = "data/prepared/table.parquet"
ENCODING_SPEC = "data/prepared/encoding.json"
PREPARE_REPORT = "reports/prepare/report.json"

SPLIT_DIR = "data/split"
SPLIT_NAMES = ("train", "validation", "test")
SPLIT_REPORT = "reports/split/report.json"

BASELINES_PREDICTIONS = "reports/baselines/predictions.parquet"
BASELINES_METRICS = "reports/baselines/metrics.json"
# tuned_gradient_boosting's study: the params it chose and their validation score ({} when
# it is not listed).
BASELINES_TUNING = "reports/baselines/tuning.json"
# How many train rows the baselines were fitted on, of how many ({} when none is listed).
BASELINES_FIT = "reports/baselines/fit.json"

MODEL = "models/model.keras"
# The same network on encoded rows (no text layers): what evaluate and predict load, on
# Keras's numpy backend, without starting TensorFlow.
NETWORK = "models/network.keras"
# The train split's profile that `stages predict` measures drift against.
PROFILE = "models/profile.json"
SAVED_MODEL = "models/saved_model"
TRAIN_DIR = "reports/train"
TRAIN_METRICS = "reports/train/metrics.json"
TRAIN_PLOTS = "reports/train/plots"
TRAIN_REPORT = "reports/train/report.json"
# The state after the last completed epoch of an interrupted run; not a DVC output.
TRAIN_BACKUP = ".resume/train.npz"

EVALUATE_METRICS = "reports/evaluate/metrics.json"
# Kept in git beside the metrics, read with `dvc metrics show <file>`.
EVALUATE_INTERVALS = "reports/evaluate/intervals.json"
EVALUATE_SLICES = "reports/evaluate/slices.json"
EVALUATE_DECISION = "reports/evaluate/calibration.json"
EVALUATE_PLOTS = "reports/evaluate/plots"
EVALUATE_PREDICTIONS = "reports/evaluate/predictions.parquet"
EVALUATE_VERDICT = "reports/evaluate/verdict.json"
# The report's PNG figures.
FIGURES = "reports/evaluate/figures"
REPORT = "reports/report.md"


def split_table(name: str) -> str:
    """Path of one split's table: train, validation or test."""
    return f"{SPLIT_DIR}/{name}.parquet"

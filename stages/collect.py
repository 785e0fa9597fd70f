"""collect: read the source named in params into a table, as read.

`collect.source` is a file, a folder or glob of files with the same columns (CSV/TSV with
any delimiter, with or without a header, plain or compressed; Parquet; JSON Lines), an
http(s) URL of such a file, or a SQLAlchemy database URL with `collect.query`. Writes the
raw table as a folder of Parquet shards (data/raw/table.parquet/part-00000.parquet, ...)
and a report with the source (password
hidden), the rows, the columns and a content fingerprint (reports/collect/report.json).
The source itself is never modified.
"""

from __future__ import annotations

from stages.common import paths
from stages.common.config import Params
from stages.common.errors import PipelineError
from stages.common.io import say, write_json, write_shards
from stages.data.sources import collect_table


def run(params: Params) -> None:
    """The collect command: read the source, write the raw table and the report."""
    import pyarrow

    frame, source = collect_table(params.collect)
    try:
        write_shards(frame, paths.RAW_TABLE)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as exc:
        raise PipelineError(
            f"{source['source']}: a column mixes types and cannot be stored ({exc})"
        ) from None
    report = {
        **source,
        "rows": len(frame),
        "columns": frame.shape[1],
        "column_names": list(frame.columns),
    }
    write_json(report, paths.COLLECT_REPORT)
    say("collect", f"{len(frame):,} rows x {frame.shape[1]} columns -> {paths.RAW_TABLE}")

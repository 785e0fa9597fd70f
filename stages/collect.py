"""collect: read the source named in params into a table, as read.

`collect.source` is a file, a folder or glob of files with the same columns (CSV/TSV with
any delimiter, with or without a header, plain or compressed; Parquet; JSON Lines), an
http(s) URL of such a file, or a SQLAlchemy database URL with `collect.query`. Writes the
raw table as a folder of Parquet shards (data/raw/table.parquet/part-00000.parquet, ...)
and a report with the source (password
hidden), the rows, the columns and a content fingerprint (reports/collect/report.json).
The source is read in chunks of `ROW_GROUP_ROWS` rows, one shard each; a column whose type
differs between chunks (numbers in one, text in another) is stored as text, as a whole
read would store it. The source itself is never modified.
"""

from __future__ import annotations

from stages.common import paths
from stages.common.config import Params
from stages.common.errors import PipelineError
from stages.common.io import ROW_GROUP_ROWS, ShardWriter, say, write_json
from stages.data.sources import opened_source


def run(params: Params) -> None:
    """The collect command: read the source chunk by chunk (memory stays bounded whatever
    its size), write the raw table's shards and the report."""
    import pyarrow

    rows, columns = 0, []
    with (
        opened_source(params.collect, chunk_rows=ROW_GROUP_ROWS) as (chunks, source),
        ShardWriter(paths.RAW_TABLE) as writer,
    ):
        try:
            for chunk in chunks:
                writer.write(chunk)
                rows += len(chunk)
                columns = list(chunk.columns)
        except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as exc:
            raise PipelineError(
                f"{source['source']}: a column mixes types and cannot be stored ({exc})"
            ) from None
        if not rows:
            raise PipelineError(f"{source['source']}: no data rows")
    report = {**source, "rows": rows, "columns": len(columns), "column_names": columns}
    write_json(report, paths.COLLECT_REPORT)
    say("collect", f"{rows:,} rows x {len(columns)} columns -> {paths.RAW_TABLE}")

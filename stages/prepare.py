"""prepare: clean the validated rows and encode every feature to numbers.

Reads data/validated/table.parquet (rows validate has already cleaned and checked) and the
schema. Writes data/prepared/table.parquet (`row_id`, the encoded feature columns under
their `x:`/`m:` names and `target`: a class index, or for regression the number itself),
data/prepared/encoding.json (the encoding spec) and reports/prepare/report.json.

Nothing here is learned from data: the encoding is a pure function of (row, schema), so a
row encodes the same whether it is alone, in a batch, in training or at prediction time.
Categories the schema lists are stored as their code, and an unknown or missing category
(code -1) reaches the model as all zeros; a missing number becomes 0 plus a 1 in its
indicator; a high-cardinality category stays text until train learns its vocabulary from
train rows; a date becomes its parts. Rows without a label are dropped and counted.
"""

from __future__ import annotations

from collections import Counter

from stages.common import paths
from stages.common.config import Params
from stages.common.io import TableWriter, read_table_batches, say, write_json
from stages.data.encoding import row_id_name
from stages.data.preparation import SeenRows, prepare_frame, spec_from_schema
from stages.data.schema import load_schema


def run(params: Params) -> None:
    """The prepare command: drop and encode the validated table's rows batch by batch (memory
    stays bounded whatever the table's size), write the table, the spec and the report."""
    schema = load_schema(params.dataset.schema_path)
    spec = spec_from_schema(schema, target=params.dataset.target, task=params.dataset.task)
    row_id = row_id_name(schema.columns)  # as validate named it
    seen = SeenRows()
    totals: Counter[str] = Counter()
    with TableWriter(paths.PREPARED_TABLE) as writer:
        for batch in read_table_batches(paths.VALIDATED_TABLE):
            prepared, counts = prepare_frame(
                batch,
                spec=spec,
                drop_duplicates=params.prepare.drop_duplicates,
                row_id=row_id,
                seen=seen,
            )
            writer.write(prepared)
            totals.update(counts)
    report = {
        **dict(totals),
        "task": spec.task,
        "features_in": len(spec.features),
        "features_out": len(spec.feature_columns),
        "excluded_columns": spec.excluded,
        "feature_kinds": {
            kind: sum(f.kind == kind for f in spec.features)
            for kind in ("numeric", "categorical", "embedded", "datetime")
        },
    }
    spec.save(paths.ENCODING_SPEC)
    write_json(report, paths.PREPARE_REPORT)
    say(
        "prepare",
        f"{report['rows_out']:,} rows ({report['duplicates_dropped']} duplicates, "
        f"{report['unlabelled_dropped']} unlabelled dropped), {report['features_out']} "
        f"encoded columns -> {paths.PREPARED_TABLE}",
    )

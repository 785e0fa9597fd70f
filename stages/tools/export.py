"""export: write models/model.keras as a TensorFlow SavedModel for TF Serving."""

from __future__ import annotations

from pathlib import Path

from stages.common import paths
from stages.common.io import say
from stages.data.encoding import EncodingSpec
from stages.model.build import model_vocabularies
from stages.model.files import load_model


def export_saved_model(
    model_path: str | Path,
    output: str | Path,
    *,
    spec_path: str | Path = paths.ENCODING_SPEC,
    missing_tokens: list[str] | None = None,
) -> None:
    """Write the raw-column model as a TensorFlow SavedModel (signature `serve`: raw columns
    -> probabilities). A model file that holds only the numeric core (one trained on the
    JAX backend) is wrapped in the row transform first."""
    import shutil

    from stages.model.serving import serving_model, takes_raw_columns

    model = load_model(model_path)
    if not takes_raw_columns(model):
        model = serving_model(
            model,
            spec=EncodingSpec.load(spec_path),
            vocabularies=model_vocabularies(model),
            missing_tokens=missing_tokens or [],
        )
    output = Path(output)
    tmp = output.with_name(f".tmp-{output.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.export(str(tmp), format="tf_saved_model", verbose=False)
        if output.exists():
            shutil.rmtree(output)
        tmp.rename(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say("export", f"SavedModel of {model_path} -> {output}")

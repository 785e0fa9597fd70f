"""`import stages.serving` before `keras.models.load_model("models/model.keras")`.

Kept at this path for code that loads the model with Keras alone: importing it registers
the layers of the raw-column model (stages/model/serving.py) and of its numeric core.
"""

from stages.model.serving import (  # noqa: F401
    core_model,
    input_name,
    raw_inputs,
    serving_model,
    takes_raw_columns,
)

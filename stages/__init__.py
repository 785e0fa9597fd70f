"""A DVC pipeline of seven stages that turns a raw table into an evaluated Keras model.

stages/<stage>.py are the pipeline's stages (one per dvc.yaml stage), stages/tools/ the
commands a person runs by hand, and the subpackages common, data, model, training and
evaluation the library both use.
"""

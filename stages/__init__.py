"""A DVC pipeline of six stages that turns a raw table into an evaluated Keras classifier."""

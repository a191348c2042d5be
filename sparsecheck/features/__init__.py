"""Deep features: calling the model on its input (:mod:`~sparsecheck.features.model_input`)."""

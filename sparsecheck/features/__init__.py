"""Deep features: what the model's decision layer sees, for every example of a split.

* :mod:`~sparsecheck.features.model_input`: calling a model on its input (a tensor, or named
  tensors), reading the logits of its output;
* :mod:`~sparsecheck.features.taps`: :class:`~sparsecheck.features.taps.FeatureExtractor`, the
  features at one layer alongside the logits (forward hooks, exported graphs, TorchScript);
* :mod:`~sparsecheck.features.extraction`: a whole split batch by batch, memory-bounded
  (:func:`~sparsecheck.features.extraction.extract_features`, ``extract_to``);
* :mod:`~sparsecheck.features.cache`: the on-disk cache keyed by model, data, layer and input;
* :mod:`~sparsecheck.features.distributed`: the ranks of a ``torchrun`` extraction.
"""

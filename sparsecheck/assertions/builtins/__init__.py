"""Built-in assertions: metric thresholds, sparse-layer checks, the prediction-table schema.

Each built-in is registered under its YAML ``type`` and has a constructor (also reachable as
``Assertion.<type>``, like pandera's ``Check.greater_than``):

=========================  ========  ======================================================
type                       family    holds when
=========================  ========  ======================================================
accuracy, recall,          metric    the metric is >= ``min`` (and, per slice ``by``, no
precision, macro_f1                  more than ``max_drop`` below the overall value)
ece                        metric    expected calibration error <= ``max`` (per slice: no more
                                     than ``max_increase`` above overall)
better_than_chance         metric    accuracy significantly above the majority-class rate (exact
                                     binomial test, p < ``max_p_value``); implied by a config
max_features_per_class     sparse    no class uses more than ``max`` features
sparse_accuracy_gap        sparse    dense accuracy - sparse accuracy <= ``max_gap``
sparse_agreement           sparse    sparse and dense predictions agree on >= ``min`` of examples
no_reliance                sparse    no feature with positive weight for ``class`` is significantly
                                     associated with ``attribute``
spurious_weight_share      sparse    features associated with spurious attributes carry <= ``max``
                                     of the total absolute weight
no_spurious_findings       sparse    the spurious-findings analysis reports nothing for ``class``
prediction_schema          table     the prediction table passes its pandera schema
=========================  ========  ======================================================

The families live in :mod:`~.metrics`, :mod:`~.sparse_layer` and :mod:`~.schema` (model
assertions: :mod:`sparsecheck.assertions.model_assertions`); importing this package registers them.

Every computation is vectorised (``bincount`` over integer group codes), so a million-row table
takes milliseconds per assertion.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from sparsecheck.assertions import run_assertions
>>> rng = np.random.default_rng(0)
>>> table = pd.DataFrame({"id": [f"x{i}" for i in range(400)], "label": rng.integers(0, 2, 400),
...                       "site": rng.choice(["a", "b"], 400)})
>>> table["prediction"] = np.where((table.site == "b") & (rng.random(400) < 0.5), 1 - table.label, table.label)
>>> suite = run_assertions([accuracy(min=0.7), accuracy(name="by-site", by=["site"], max_drop=0.1)], table)
>>> [(r.name, r.status) for r in suite]
[('accuracy', 'pass'), ('by-site', 'fail')]
>>> suite["by-site"].message
'1 of 2 slices below 0.625 (overall 0.725 - 0.1): site=b 0.466 [0.399, 0.534] n=206'
"""

from sparsecheck.assertions.builtins.common import ClassRef, Head, examples_frame
from sparsecheck.assertions.builtins.metrics import accuracy, better_than_chance, ece, macro_f1, precision, recall
from sparsecheck.assertions.builtins.schema import prediction_schema
from sparsecheck.assertions.builtins.sparse_layer import (
    max_features_per_class,
    no_reliance,
    no_spurious_findings,
    sparse_accuracy_gap,
    sparse_agreement,
    spurious_weight_share,
)
from sparsecheck.assertions.spec import Assertion

__all__ = [
    "accuracy", "recall", "precision", "macro_f1", "ece", "better_than_chance",
    "max_features_per_class", "sparse_accuracy_gap", "sparse_agreement", "no_reliance", "spurious_weight_share",
    "no_spurious_findings", "prediction_schema", "examples_frame",
]


_CONSTRUCTORS = {"accuracy": accuracy, "recall": recall, "precision": precision, "macro_f1": macro_f1, "ece": ece,
                 "better_than_chance": better_than_chance,
                 "max_features_per_class": max_features_per_class, "sparse_accuracy_gap": sparse_accuracy_gap,
                 "sparse_agreement": sparse_agreement, "no_reliance": no_reliance,
                 "spurious_weight_share": spurious_weight_share, "prediction_schema": prediction_schema,
                 "no_spurious_findings": no_spurious_findings}
# pandera's pattern: built-in constructors hang off the class (Check.greater_than); Assertion.accuracy(...)
for _name, _fn in _CONSTRUCTORS.items():
    setattr(Assertion, _name, staticmethod(_fn))

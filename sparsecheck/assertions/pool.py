"""The assertions checked on an unlabelled pool (``sparsecheck select``, ``weak-labels``): the config's
label-free ones and ``select.assertions``, none about the sparse layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparsecheck.assertions.spec import parse_assertions
from sparsecheck.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.config import Config

__all__ = ["MODEL_LEVEL", "pool_assertions"]

#: what assertions about the sparse layer need: a pool has none of it (``sparsecheck run`` checks them)
MODEL_LEVEL = frozenset({"sparse_layer", "sparse_predictions", "feature_attributes", "spurious_findings"})


def pool_assertions(config: "Config") -> list[Any]:
    """The assertions checked on an unlabelled pool (``sparsecheck select``, ``weak-labels``): the
    config's enabled label-free ones, then ``select.assertions``. Left out: the implied ones and
    those about the sparse layer (they judge the model, which ``sparsecheck run`` checks, not
    examples).

    Raises
    ------
    ConfigError
        naming ``select.assertions`` when one of them is malformed, needs labels, or reuses the
        name of an assertion under ``assertions:``.
    """
    own = [a for a in config.parsed_assertions if not a.implied]
    extra = parse_assertions(config.select.assertions, class_names=config.data.class_names)
    names = {a.name for a in own}
    for a in extra:
        if a.name in names:
            raise ConfigError(f"assertion name {a.name!r} is already used under assertions:",
                              key="select.assertions", value=a.name)
        if a.needs_labels or set(a.requires) & MODEL_LEVEL:
            raise ConfigError(f"assertion {a.name!r} ({a.type}) needs "
                              f"{'labels' if a.needs_labels else 'the sparse layer'}, which a pool does not have",
                              key="select.assertions", value=a.name)
    return [a for a in [*own, *extra] if a.enabled and not a.needs_labels and not set(a.requires) & MODEL_LEVEL]

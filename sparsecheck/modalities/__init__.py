"""Kinds of input behind one seam: :class:`~sparsecheck.modalities.base.Modality` and its registry.

* :mod:`~sparsecheck.modalities.base`: the interface (what a kind of input must answer) and the
  protocols of what it hands out (splits, input transforms, explainers, cues, ...);
* :mod:`~sparsecheck.modalities.image`: images, the first implementation;
* :mod:`~sparsecheck.modalities.text`: texts (``data.modality: text``).

A config picks one with ``data.modality`` (default ``image``); :func:`get_modality` looks it up,
:func:`register_modality` adds one (a test's stand-in, a plug-in).

Examples
--------
>>> from sparsecheck.modalities import get_modality, modality_names
>>> "image" in modality_names(), get_modality("image").noun
(True, 'image')
>>> get_modality("smell")
Traceback (most recent call last):
...
sparsecheck.errors.ConfigError: data.modality: no modality 'smell' (known: image...)
"""

from __future__ import annotations

from sparsecheck.errors import ConfigError, ParameterError
from sparsecheck.modalities.base import (
    AttributeMeasurer,
    Cue,
    CueEstimate,
    Explanation,
    InputTransform,
    InvarianceTransform,
    LocalExplainer,
    Modality,
    Perturbation,
    RawBatch,
    Split,
    batch_length,
    call_model,
    output_tensor,
)
from sparsecheck.modalities.image import ImageModality
from sparsecheck.modalities.text import TextModality

__all__ = ["Modality", "Split", "InputTransform", "RawBatch", "Explanation", "LocalExplainer", "Cue", "CueEstimate",
           "AttributeMeasurer", "InvarianceTransform", "Perturbation", "call_model", "batch_length", "output_tensor",
           "ImageModality", "TextModality", "DEFAULT_MODALITY", "get_modality", "register_modality", "modality_names"]

#: the modality of a config that names none
DEFAULT_MODALITY = "image"

_REGISTRY: dict[str, Modality] = {}


def register_modality(modality: Modality, *, replace: bool = False) -> Modality:
    """Make ``modality`` selectable as ``data.modality: <modality.name>``; returns it.

    Raises ParameterError when the name is taken (unless ``replace``) or the object is no
    :class:`Modality`.
    """
    if not isinstance(modality, Modality):
        raise ParameterError(f"The 'modality' parameter of register_modality must be a Modality instance. "
                             f"Got {type(modality).__name__} instead.", parameter="modality")
    if modality.name in _REGISTRY and not replace and _REGISTRY[modality.name] is not modality:
        raise ParameterError(f"a modality named {modality.name!r} is already registered "
                             f"({type(_REGISTRY[modality.name]).__name__}); pass replace=True to replace it",
                             parameter="modality")
    _REGISTRY[modality.name] = modality
    return modality


def unregister_modality(name: str) -> None:
    """Remove a registered modality (a test's stand-in, once the test is done)."""
    _REGISTRY.pop(name, None)


def modality_names() -> list[str]:
    """The names ``data.modality`` accepts, in registration order."""
    return list(_REGISTRY)


def get_modality(name: str | None = None) -> Modality:
    """The registered modality called ``name`` (None: :data:`DEFAULT_MODALITY`).

    Raises ConfigError naming ``data.modality`` for an unknown name.
    """
    key = DEFAULT_MODALITY if name is None else str(name)
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ConfigError(f"no modality {key!r} (known: {', '.join(_REGISTRY)})", key="data.modality",
                          value=key) from None


register_modality(ImageModality())
register_modality(TextModality())

"""Cues: changes put on (or taken off) images to ask a model directly whether it relies on them.

:mod:`~sparsecheck.analysis.cues.library` holds the cues a config can declare
(``data.interventions``) and their parser; :mod:`~sparsecheck.analysis.cues.estimate` learns a
cue from the images that carry an attribute value (:func:`estimate_cue`).
"""

from sparsecheck.analysis.cues.estimate import AddNoise, ColourMap, CueEstimate, Jpeg, Transplant, estimate_cue
from sparsecheck.analysis.cues.library import (CUES, REGIONS, Background, Blur, Border, CallableCue, Cue, Erase,
                                               Invert, Patch, Tint, backdrop, parse_cue, parse_intervention)

__all__ = ["Cue", "Patch", "Border", "Tint", "Invert", "Blur", "Background", "Erase", "CallableCue", "CUES",
           "REGIONS", "parse_cue", "parse_intervention", "backdrop", "CueEstimate", "estimate_cue", "Transplant",
           "ColourMap", "AddNoise", "Jpeg"]

"""The pipeline: the only code that knows both the run context and the libraries.

* :mod:`~sparsecheck.pipeline.context`: :class:`RunContext` (what one run knows, handed from
  stage to stage) and :class:`SplitView` (one split after feature extraction);
* :mod:`~sparsecheck.pipeline.stages`: the stages, each config → library call → context;
* :mod:`~sparsecheck.pipeline.run`: :func:`run_pipeline`, the outputs and the exit code.

Examples
--------
>>> from sparsecheck.pipeline import STAGES
>>> [s.__name__ for s in STAGES][:3]
['load_stage', 'extract_stage', 'dense_stage']
"""

from sparsecheck.pipeline.context import RunContext, SplitView
from sparsecheck.pipeline.run import exit_code_for, prepare_out_dir, run_pipeline, write_outputs
from sparsecheck.pipeline.stages import STAGES, Stage

__all__ = ["run_pipeline", "write_outputs", "prepare_out_dir", "exit_code_for", "STAGES", "Stage", "RunContext",
           "SplitView"]

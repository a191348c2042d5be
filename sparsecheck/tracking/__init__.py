"""MLflow as the system of record: every ``sparsecheck run`` (and monitoring batch) is one MLflow run.

A run holds the config as params, the headline figures as metrics (dense and sparse accuracy,
sparsity, features per class, error rates of the top slices, assertion counts), tags
(``sparsecheck.status``, ``sparsecheck.version``, ``sparsecheck.model_fingerprint``,
``sparsecheck.kind``, and for a model loaded from MLflow ``sparsecheck.model_uri``,
``sparsecheck.model_name``, ``sparsecheck.model_version``, ``sparsecheck.model_run_id``,
``sparsecheck.model_id``) and the outputs as artifacts: ``report.html``, ``results.json``,
``junit.xml``, ``activations.npz``, ``test_features.npz``, ``sparse_layer/`` and ``features/``;
the data splits as MLflow dataset inputs (:mod:`~.datasets`) and the sparse layer as
``mlflow.pytorch`` models (:mod:`~.sparse_model`).

The order matters because ``results.json`` names its own MLflow run and is itself an artifact::

    run = start_run(config.mlflow)          # 1. create the run (its id is now known; dead runs closed)
    with run:                               #    heartbeat; FAILED (KILLED on SIGINT/SIGTERM) if it raises
        ...write report.html                # 2. local outputs, carrying run.info
        run.log_outputs(ctx)                # 3. params, metrics, artifacts, results.json from memory
    # 4. on leaving the block: tag sparsecheck.status, terminate FINISHED
    ...write results.json                   # 5. last, recording the run's final status

A process killed outright leaves its run RUNNING: :mod:`~.liveness` has the next run in the
experiment close it. :mod:`~.evaluator` runs the gate from ``mlflow.models.evaluate``.

Where runs go: ``tracking_uri`` when given (``--tracking-uri`` or ``mlflow.tracking_uri`` in the
config), else ``$MLFLOW_TRACKING_URI``, else a SQLite store ``mlflow.db`` in the working
directory, whose artifacts go to ``mlruns/`` beside it; ``mlflow ui --backend-store-uri
sqlite:///mlflow.db`` in that directory shows them. Everything talks to MLflow through an explicit
:class:`mlflow.MlflowClient`; no global MLflow state (tracking URI, active run) is touched.

The package: :mod:`~.store` (URI, reachability, client, quiet MLflow), :mod:`~.run_logging`
(params, metrics, tags, artifacts; :class:`MlflowRun`, :func:`start_run`), :mod:`~.reading`
(:func:`load_run_results`, :func:`load_run_feature_attributes`, :func:`download_run_artifact`) and :mod:`~.registry` (model URIs,
the verdict on a registered model version, finding a version's check).

MLflow and alembic log on INFO and print run links to stdout; that is kept out of the user's
output for the duration of each call here (unless this module's logger is at DEBUG).

Nothing is imported here: import the module you need (``from sparsecheck.tracking.run_logging
import start_run``), so that loading a model from MLflow (:mod:`~.registry`) does not load the run
logging, which reads the sparse layer, which loads models.

Examples
--------
>>> from sparsecheck.tracking.store import resolve_tracking_uri
>>> from sparsecheck.tracking.run_logging import metrics_from_results
>>> resolve_tracking_uri("http://127.0.0.1:5000/")
'http://127.0.0.1:5000'
>>> metrics_from_results({"status": "pass", "dense": {"test_accuracy": 0.8},
...                       "slices": [{"predicates": {"site": "a"}, "size": 40, "error_rate": 0.6}],
...                       "assertions": [{"name": "accuracy", "status": "pass"}]})
{'dense_test_accuracy': 0.8, 'dense_accuracy': 0.8, 'slice_1_error_rate': 0.6, 'n_slices': 1.0, 'n_significant_slices': 0.0, 'assertions_total': 1.0, 'assertions_passed': 1.0, 'assertions_failed': 0.0, 'assertions_errored': 0.0, 'assertions_failing': 0.0, 'n_spurious_findings': 0.0, 'n_automatic_findings': 0.0, 'n_feature_cards': 0.0}
"""

"""Models in MLflow: resolving a model URI, downloading the model, and writing the gate's verdict back.

A model URI names a model the way MLflow does (:func:`parse_model_uri`):

==========================  ==================================================================
``models:/NAME/VERSION``    a registered model version
``models:/NAME@ALIAS``      the version an alias points at *now* (resolved once, at load time)
``runs:/RUN_ID/PATH``       a model logged by a run (MLflow 3: the run's logged model ``PATH``)
``models:/m-...``           an MLflow 3 logged model id
==========================  ==================================================================

:func:`resolve_model_uri` turns one into a :class:`ModelOrigin` (registered name, version, alias,
the source run, the logged model id and where its files are) against an explicit tracking URI —
the registry is the tracking server's own. No global MLflow state is touched.

The verdict of a gated run goes back onto the model version (:func:`record_verdict`): tags
``sparsecheck.status``, ``sparsecheck.run_id``, ``sparsecheck.failed_assertions``,
``sparsecheck.spurious_findings`` and ``sparsecheck.checked_at``, the same on the MLflow 3 logged
model, and an alias (``validated``) moved onto the version only when the gate passes. The
sparsecheck run itself carries where its model came from (:data:`RUN_TAGS`), which is how
:func:`find_check_run` finds the check of a model version later.

Examples
--------
>>> parse_model_uri("models:/digits@champion")
ModelUri(uri='models:/digits@champion', name='digits', version=None, alias='champion', run_id=None, path=None, model_id=None)
>>> parse_model_uri("runs:/0a1b2c/model").run_id
'0a1b2c'
>>> parse_model_uri("models:/digits/three")
Traceback (most recent call last):
...
ValueError: 'models:/digits/three': models:/NAME/VERSION takes a version number (for an alias write models:/NAME@ALIAS)
"""

from __future__ import annotations

import datetime as _dt
import difflib
import logging
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from sparsecheck.errors import TrackingError
from sparsecheck.tracking.store import (
    _check_reachable,
    _client,
    _not_found,
    _one_line,
    _quiet,
    _redact,
    resolve_tracking_uri,
)
from sparsecheck.tracking.tags import (
    TAG_CHECKED_AT,
    TAG_FAILED_ASSERTIONS,
    TAG_KIND,
    TAG_MODEL_ID,
    TAG_MODEL_NAME,
    TAG_MODEL_RUN_ID,
    TAG_MODEL_URI,
    TAG_MODEL_VERSION,
    TAG_RUN_ID,
    TAG_SPURIOUS_FINDINGS,
    TAG_STATUS,
)

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

__all__ = ["ModelUri", "ModelOrigin", "Verdict", "parse_model_uri", "is_model_uri", "resolve_model_uri",
           "download_model", "record_verdict", "find_check_run", "link_model_input", "check_alias_name",
           "RUN_TAGS", "VERDICT_TAGS"]

#: tags on a sparsecheck run saying which model it checked (shared with the MLflow data logging)
RUN_TAGS = (TAG_MODEL_URI, TAG_MODEL_NAME, TAG_MODEL_VERSION, TAG_MODEL_RUN_ID, TAG_MODEL_ID)
#: tags the verdict writes on the model version (and on the MLflow 3 logged model)
VERDICT_TAGS = (TAG_STATUS, TAG_RUN_ID, TAG_FAILED_ASSERTIONS,
                TAG_SPURIOUS_FINDINGS, TAG_CHECKED_AT)

_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or models:/m-<logged model id>"
_LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{8,}$")
_RUN_ID = re.compile(r"^[0-9a-zA-Z_-]+$")
# MLflow's alias rule: letters, digits, _ and -; not "latest", not vN (that reads as a version)
_ALIAS = re.compile(r"^[\w-]{1,255}$")


# --------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class ModelUri:
    """A model URI split into its parts (no MLflow call needed)."""

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    path: str | None = None
    model_id: str | None = None

    @property
    def registered(self) -> bool:
        """True for ``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``: a registered model version."""
        return self.name is not None


def is_model_uri(text: str) -> bool:
    """True when ``text`` looks like an MLflow model URI (``models:/...`` or ``runs:/...``), not a run id."""
    return text.strip().startswith(("models:/", "runs:/"))


def check_alias_name(alias: str) -> str:
    """``alias`` if MLflow accepts it as a registered model alias, else ValueError saying why."""
    if not _ALIAS.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise ValueError(f"{alias!r} is not a usable alias (letters, digits, '_' and '-'; not 'latest' "
                         "and not v<number>, which MLflow reads as a version)")
    return alias


def parse_model_uri(uri: str) -> ModelUri:
    """Split ``uri`` into name/version/alias, run id/path or logged model id.

    Raises
    ------
    ValueError
        naming the URI and the forms that are accepted.
    """
    text = str(uri).strip()
    if text.startswith("runs:/"):
        run_id, _, path = text[len("runs:/"):].strip("/").partition("/")
        if not run_id or not _RUN_ID.match(run_id) or not path:
            raise ValueError(f"{text!r}: a run's model is runs:/RUN_ID/PATH (e.g. runs:/<run id>/model)")
        return ModelUri(text, run_id=run_id, path=path.strip("/"))
    if not text.startswith("models:/") or text.startswith("models://"):
        raise ValueError(f"{text!r} is not an MLflow model URI; give {_FORMS}")
    rest = text[len("models:/"):].strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if not name or not alias or "/" in name or "/" in alias:
            raise ValueError(f"{text!r}: an alias is written models:/NAME@ALIAS")
        return ModelUri(text, name=name, alias=alias)
    parts = rest.split("/")
    if len(parts) == 1 and _LOGGED_MODEL_ID.match(parts[0]):
        return ModelUri(text, model_id=parts[0])
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{text!r} is not an MLflow model URI; give {_FORMS}")
    if not parts[1].isdigit():
        raise ValueError(f"{text!r}: models:/NAME/VERSION takes a version number "
                         f"(for an alias write models:/NAME@ALIAS)")
    return ModelUri(text, name=parts[0], version=str(int(parts[1])))


# --------------------------------------------------------------------------- resolving
@dataclass(frozen=True)
class ModelOrigin:
    """Where a model came from in MLflow; ``results.json`` records it as ``mlflow_model``.

    Attributes
    ----------
    uri : str
        The URI as given (``models:/digits@challenger``).
    tracking_uri : str
        The tracking server (and registry) it was resolved against, credentials removed.
    name, version, alias : str or None
        The registered model version (the alias, when the URI used one, as it pointed at load time).
    run_id : str or None
        The run that logged the model (the version's source run).
    model_id : str or None
        The MLflow 3 logged model id (``m-...``).
    artifact_uri : str
        Where the model's files are (what is downloaded).
    """

    uri: str
    tracking_uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    model_id: str | None = None
    artifact_uri: str = field(default="", compare=False)
    #: the tracking URI to call, credentials included (never written out; ``tracking_uri`` is what is shown)
    client_uri: str = field(default="", compare=False, repr=False)

    @property
    def _calls(self) -> str:
        return resolve_tracking_uri(self.client_uri or self.tracking_uri)

    @property
    def registered(self) -> bool:
        return self.name is not None and self.version is not None

    @property
    def label(self) -> str:
        """``digits version 3 (@champion)``, ``logged model m-…``, or the URI."""
        if self.registered:
            return f"{self.name} version {self.version}" + (f" (@{self.alias})" if self.alias else "")
        if self.model_id:
            return f"logged model {self.model_id}"
        return self.uri

    def to_dict(self) -> dict[str, Any]:
        """``{uri, name, version, alias, run_id, model_id, tracking_uri}`` (results.json's ``mlflow_model``)."""
        d = asdict(self)
        d.pop("artifact_uri")
        d.pop("client_uri")
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelOrigin":
        keys = ("uri", "tracking_uri", "name", "version", "alias", "run_id", "model_id")
        return cls(**{k: (None if data.get(k) is None else str(data.get(k))) for k in keys})  # type: ignore[arg-type]

    def run_tags(self) -> dict[str, str]:
        """The tags a sparsecheck run of this model carries (:data:`RUN_TAGS`; missing parts left out)."""
        values = {TAG_MODEL_URI: self.uri, TAG_MODEL_NAME: self.name, TAG_MODEL_VERSION: self.version,
                  TAG_MODEL_RUN_ID: self.run_id, TAG_MODEL_ID: self.model_id}
        return {k: str(v) for k, v in values.items() if v}


def resolve_model_uri(uri: str, tracking_uri: str | None = None) -> ModelOrigin:
    """Resolve a model URI against the tracking server: which version, which run, which files.

    Parameters
    ----------
    uri : str
        See :func:`parse_model_uri`.
    tracking_uri : str, optional
        See :func:`~sparsecheck.tracking.resolve_tracking_uri`; the registry is the same store.

    Raises
    ------
    TrackingError
        exit 2 (``user_input``) when the name, version, alias, run or logged model is not there —
        naming it, with the versions and aliases that exist; exit 3 when the server is unreachable
        or refuses.
    """
    try:
        parsed = parse_model_uri(uri)
    except ValueError as exc:
        raise TrackingError(str(exc), user_input=True) from None
    resolved = resolve_tracking_uri(tracking_uri)
    shown = _redact(resolved)
    _check_reachable(resolved)
    try:
        with _quiet():
            client = _client(resolved)
            if parsed.registered:
                origin = _resolve_version(client, parsed, shown)
            elif parsed.model_id is not None:
                origin = _resolve_logged_model(client, parsed, shown)
            else:
                origin = _resolve_run_model(client, parsed, shown)
        return replace(origin, client_uri=resolved)
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot resolve {uri} at the MLflow server {shown}: {_one_line(exc)}") from exc


def _logged_model_id(version: Any) -> str | None:
    model_id = getattr(version, "model_id", None)
    if model_id:
        return str(model_id)
    source = str(getattr(version, "source", "") or "")
    tail = source[len("models:/"):] if source.startswith("models:/") else ""
    return tail if _LOGGED_MODEL_ID.match(tail) else None


def _resolve_version(client: "MlflowClient", parsed: ModelUri, shown: str) -> ModelOrigin:
    name = str(parsed.name)
    try:
        if parsed.alias is not None:
            mv = client.get_model_version_by_alias(name, parsed.alias)
        else:
            mv = client.get_model_version(name, str(parsed.version))
    except Exception as exc:
        if not (_not_found(exc) or getattr(exc, "error_code", None) == "INVALID_PARAMETER_VALUE"):
            raise
        raise _unknown_version(client, parsed, shown) from exc
    status = str(getattr(mv, "status", "READY") or "READY")
    if status != "READY":
        raise TrackingError(f"{parsed.uri}: version {mv.version} of {name!r} at {shown} is {status}, not READY "
                            f"({getattr(mv, 'status_message', '') or 'registration has not finished'})",
                            user_input=True)
    artifact_uri = client.get_model_version_download_uri(name, str(mv.version))
    return ModelOrigin(parsed.uri, shown, name=name, version=str(mv.version), alias=parsed.alias,
                       run_id=getattr(mv, "run_id", None) or None, model_id=_logged_model_id(mv),
                       artifact_uri=str(artifact_uri))


def _unknown_version(client: "MlflowClient", parsed: ModelUri, shown: str) -> TrackingError:
    """Say what is there instead: the model's versions and aliases, or the registered names close to it."""
    name = str(parsed.name)
    try:
        model = client.get_registered_model(name)
    except Exception as exc:
        if not _not_found(exc):
            raise
        names = [m.name for m in client.search_registered_models(max_results=1000)]
        close = difflib.get_close_matches(name, names, n=3)
        hint = (f"; did you mean {', '.join(repr(c) for c in close)}?" if close
                else f"; registered models there: {', '.join(sorted(names)[:10]) or 'none'}")
        return TrackingError(f"{parsed.uri}: no registered model {name!r} at {shown}{hint}", user_input=True)
    versions = sorted((int(v.version) for v in client.search_model_versions(f"name = '{_quoted(name)}'")),
                      reverse=True)
    aliases = getattr(model, "aliases", None) or {}
    listed = ", ".join(str(v) for v in versions[:20]) + (" …" if len(versions) > 20 else "")
    alias_text = ", ".join(f"@{a} → {v}" for a, v in sorted(aliases.items())) or "none"
    what = f"alias @{parsed.alias}" if parsed.alias is not None else f"version {parsed.version}"
    return TrackingError(f"{parsed.uri}: registered model {name!r} at {shown} has no {what} "
                         f"(versions: {listed or 'none'}; aliases: {alias_text})", user_input=True)


def _quoted(value: str) -> str:
    """A value for an MLflow filter string in single quotes."""
    if "'" in value or "\\" in value:
        raise TrackingError(f"{value!r}: names with quotes or backslashes cannot be searched", user_input=True)
    return value


def _resolve_logged_model(client: "MlflowClient", parsed: ModelUri, shown: str) -> ModelOrigin:
    try:
        model = client.get_logged_model(str(parsed.model_id))
    except Exception as exc:
        if not _not_found(exc):
            raise
        raise TrackingError(f"{parsed.uri}: no logged model {parsed.model_id} at {shown}", user_input=True) from exc
    return ModelOrigin(parsed.uri, shown, run_id=getattr(model, "source_run_id", None) or None,
                       model_id=str(model.model_id), artifact_uri=str(model.artifact_location))


def _resolve_run_model(client: "MlflowClient", parsed: ModelUri, shown: str) -> ModelOrigin:
    run_id, path = str(parsed.run_id), str(parsed.path)
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if not _not_found(exc):
            raise
        raise TrackingError(f"{parsed.uri}: no MLflow run {run_id} at {shown}", user_input=True) from exc
    # MLflow 3 keeps a run's models as logged models (named PATH), not among the run's artifacts
    head, _, rest = path.partition("/")
    models = [m for m in client.search_logged_models([run.info.experiment_id], filter_string=f"name = '{_quoted(head)}'")
              if getattr(m, "source_run_id", None) == run_id]
    if models:
        model = models[0]
        location = str(model.artifact_location).rstrip("/") + (f"/{rest}" if rest else "")
        return ModelOrigin(parsed.uri, shown, run_id=run_id, model_id=str(model.model_id), artifact_uri=location)
    listed = [f.path for f in client.list_artifacts(run_id)]
    if head not in listed:
        logged = [m.name for m in client.search_logged_models([run.info.experiment_id])
                  if getattr(m, "source_run_id", None) == run_id]
        raise TrackingError(f"{parsed.uri}: run {run_id} at {shown} has no model {path!r} "
                            f"(its logged models: {', '.join(logged) or 'none'}; "
                            f"its artifacts: {', '.join(listed[:10]) or 'none'})", user_input=True)
    return ModelOrigin(parsed.uri, shown, run_id=run_id, artifact_uri=f"{run.info.artifact_uri.rstrip('/')}/{path}")


def download_model(origin: ModelOrigin, dst_dir: str | Path) -> Path:
    """Download the model's files (its ``MLmodel`` folder) into ``dst_dir``; return the folder.

    Raises
    ------
    TrackingError
        the files cannot be read (exit 3).
    """
    import mlflow.artifacts

    resolved = origin._calls
    try:
        with _quiet():
            local = mlflow.artifacts.download_artifacts(artifact_uri=origin.artifact_uri, dst_path=str(dst_dir),
                                                        tracking_uri=resolved, registry_uri=resolved)
    except Exception as exc:
        raise TrackingError(f"cannot download {origin.uri} ({origin.artifact_uri}) from {origin.tracking_uri}: "
                            f"{_one_line(exc)}") from exc
    return Path(local)


# --------------------------------------------------------------------------- the run's link to its model
def link_model_input(client: "MlflowClient", run_id: str, model_id: str | None) -> bool:
    """Record the MLflow 3 logged model as an input of the run (the UI links the two). Never raises:
    a server without model inputs still has the run's :data:`RUN_TAGS`."""
    if not model_id:
        return False
    try:
        from mlflow.entities import LoggedModelInput

        with _quiet():
            client.log_inputs(run_id, models=[LoggedModelInput(model_id)])
    except Exception as exc:  # older servers: the tags still say which model
        logger.warning("could not link logged model %s to run %s as an input (%s); its tags name it",
                       model_id, run_id, _one_line(exc))
        return False
    return True


# --------------------------------------------------------------------------- the verdict
@dataclass
class Verdict:
    """What :func:`record_verdict` wrote: the tags, and the alias it moved (or why it did not), in
    ``seconds``."""

    origin: ModelOrigin
    tags: dict[str, str]
    alias: str | None = None
    promoted: bool = False
    alias_note: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the terminal."""
        line = f"verdict {self.tags.get('sparsecheck.status')} tagged on {self.origin.label}"
        if self.alias:
            line += f"; {self.alias_note}"
        return line


def record_verdict(origin: ModelOrigin, *, status: str, run_id: str, failed_assertions: int,
                   spurious_findings: int, promote_alias: str | None = None,
                   checked_at: str | None = None) -> Verdict:
    """Tag the model version (and its logged model) with the gate's verdict; move ``promote_alias``
    onto the version only when ``status`` is ``"pass"``.

    Parameters
    ----------
    origin : ModelOrigin
        The checked model (:func:`resolve_model_uri`).
    status : {"pass", "fail"}
        From :func:`sparsecheck.results.gate_status` — the one gate rule.
    run_id : str
        The sparsecheck MLflow run holding the evidence.
    failed_assertions, spurious_findings : int
        Counts recorded as tags.
    promote_alias : str, optional
        Alias (e.g. ``validated``) to set on the version when the gate passes; never moved on a failure.

    Raises
    ------
    TrackingError
        a tag or the alias could not be written (permission, unreachable server): exit 3.
    """
    if status not in ("pass", "fail"):
        raise ValueError(f"status must be 'pass' or 'fail', got {status!r}")
    tags = {TAG_STATUS: status, TAG_RUN_ID: run_id,
            TAG_FAILED_ASSERTIONS: str(int(failed_assertions)),
            TAG_SPURIOUS_FINDINGS: str(int(spurious_findings)),
            TAG_CHECKED_AT: checked_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    start = time.perf_counter()
    verdict = Verdict(origin, tags, alias=promote_alias)
    if not origin.registered and not origin.model_id:
        logger.info("%s is neither a registered model version nor a logged model: no verdict tags to write",
                    origin.uri)
        return verdict
    resolved = origin._calls
    _check_reachable(resolved)
    what = origin.label
    try:
        with _quiet():
            client = _client(resolved)
            if origin.registered:
                for key, value in tags.items():
                    client.set_model_version_tag(str(origin.name), str(origin.version), key, value)
            if origin.model_id:
                what = f"logged model {origin.model_id}"
                client.set_logged_model_tags(origin.model_id, tags)
            if promote_alias and origin.registered:
                if status == "pass":
                    what = f"alias @{promote_alias} of {origin.name}"
                    client.set_registered_model_alias(str(origin.name), promote_alias, str(origin.version))
                    verdict.promoted = True
                    verdict.alias_note = f"alias @{promote_alias} now points at version {origin.version}"
                else:
                    verdict.alias_note = (f"alias @{promote_alias} NOT moved: the gate failed "
                                          f"({_current_alias(client, str(origin.name), promote_alias)})")
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"writing the verdict on {what} at {origin.tracking_uri} failed: {_one_line(exc)}") from exc
    verdict.seconds = time.perf_counter() - start
    logger.info("%s (%.2f s)", verdict.summary(), verdict.seconds)
    if promote_alias and not verdict.promoted:
        logger.warning("%s", verdict.alias_note)
    return verdict


def _current_alias(client: "MlflowClient", name: str, alias: str) -> str:
    try:
        return f"it still points at version {client.get_model_version_by_alias(name, alias).version}"
    except Exception:
        return "it is not set"


# --------------------------------------------------------------------------- finding a version's check
def find_check_run(origin: ModelOrigin) -> str | None:
    """The latest FINISHED sparsecheck run (kind ``run``) of this model, or None when it has none.

    First the run the version's ``sparsecheck.run_id`` tag names (the latest gate wrote it), then a
    search of every experiment for runs tagged with this model (:data:`RUN_TAGS`).

    Raises
    ------
    TrackingError
        the server is unreachable or refuses (exit 3).
    """
    resolved = origin._calls
    _check_reachable(resolved)
    try:
        with _quiet():
            client = _client(resolved)
            tagged = None
            if origin.registered:
                mv = client.get_model_version(str(origin.name), str(origin.version))
                tagged = (mv.tags or {}).get(TAG_RUN_ID)
            elif origin.model_id:
                tagged = (client.get_logged_model(origin.model_id).tags or {}).get(TAG_RUN_ID)
            if tagged and _is_finished_check(client, tagged):
                return str(tagged)
            if origin.registered:
                match = (f"tags.`{TAG_MODEL_NAME}` = '{_quoted(str(origin.name))}' and "
                         f"tags.`{TAG_MODEL_VERSION}` = '{_quoted(str(origin.version))}'")
            elif origin.model_id:
                match = f"tags.`{TAG_MODEL_ID}` = '{_quoted(origin.model_id)}'"
            else:
                match = f"tags.`{TAG_MODEL_URI}` = '{_quoted(origin.uri)}'"
            experiments = [e.experiment_id for e in client.search_experiments()]
            runs = []
            for start in range(0, len(experiments), 100):  # MLflow searches at most 100 experiments at once
                runs += client.search_runs(experiments[start:start + 100],
                                           filter_string=f"{match} and tags.`sparsecheck.kind` = 'run' "
                                                         "and attributes.status = 'FINISHED'",
                                           order_by=["attributes.start_time DESC"], max_results=1)
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot search the checks of {origin.uri} at {origin.tracking_uri}: "
                            f"{_one_line(exc)}") from exc
    if not runs:
        return None
    return str(max(runs, key=lambda r: r.info.start_time or 0).info.run_id)


def _is_finished_check(client: "MlflowClient", run_id: str) -> bool:
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if _not_found(exc):
            return False
        raise
    return (run.info.status == "FINISHED" and run.info.lifecycle_stage != "deleted"
            and run.data.tags.get(TAG_KIND) == "run")

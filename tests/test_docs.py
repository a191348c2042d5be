"""The documentation site: it builds with ``mkdocs build --strict`` (CI runs it here), its generated
reference pages hold every config key and results.json field, the monitoring recipe is two clicks
from the home page, and the README points only at files of this repository."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from tests.conftest import require
from tests.helpers import mkdocs_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        require(importlib.util.find_spec(module) is not None, f"{module} (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def _text(page: str) -> str:
    """What the page shows: the HTML's text (code highlighting splits code into spans)."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_the_site_builds_strict_with_every_page(site: Path) -> None:
    for page in ("getting-started", "gate", "compare", "monitor", "config", "config-keys", "sources", "results",
                 "results-schema", "api", "benchmarks", "architecture"):
        assert (site / page / "index.html").is_file(), page
    assert not (site / "gen_reference.py").exists()  # the hook is not published
    api = _page(site, "api")
    assert "SparseDecisionLayer" in api and "doc-heading" in api  # mkdocstrings rendered the docstrings
    gate = _page(site, "gate")
    assert "gh pr comment" in _text(gate)  # the GitHub Actions workflow is included from examples/
    assert "monitor-nightly.sh" in _text(_page(site, "monitor"))
    # the architecture's diagram is a Mermaid block the theme draws, not code shown as text
    arch = _page(site, "architecture")
    assert re.search(r'<pre class="mermaid"><code>\s*(flowchart|graph)', arch), arch[:2000]


def test_the_monitor_recipe_is_two_clicks_from_home(site: Path) -> None:
    """Home → Monitor (in the navigation on every page) → the recipe on that page."""
    home = (site / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<a [^>]*href="monitor/"', home)
    monitor = _text(_page(site, "monitor"))
    assert "sparsecheck monitor sparsecheck-demo/data/config.yaml --batch" in monitor
    nav = mkdocs_config(ROOT)["nav"]
    uses = next(item["Uses"] for item in nav if isinstance(item, dict) and "Uses" in item)
    assert {"Monitor": "monitor.md"} in uses


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _keys(ann, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_the_generated_reference_lists_every_config_key_and_results_field(site: Path) -> None:
    from sparsecheck.config import Config
    from sparsecheck.results import MlflowRecord, RunResults

    page = _page(site, "config-keys")
    for key in _keys(Config):
        section, _, name = key.rpartition(".")
        assert f"<code>{name}</code>" in page, key
        if section:
            assert f"<code>{section}</code>" in page, section
    schema = _page(site, "results-schema")
    for model in (RunResults, MlflowRecord):
        for name in model.model_fields:
            assert f"<code>{name}</code>" in schema, (model.__name__, name)


def _links(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", markdown)


def test_the_readme_points_only_at_files_of_this_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = _links(readme)
    assert links, "the README links the documentation"
    for link in links:
        target = link.split("#", 1)[0]
        assert not re.match(r"^[a-z]+:", link) and not target.startswith(("/", "~")), link
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), link
    # a newcomer's five minutes (the two commands, the uses, the exit codes, and the figures the issues
    # ask the README itself to hold: held-out detection, labelling); the rest is on the site
    assert len(readme.splitlines()) < 160


def test_the_getting_started_page_gives_the_readmes_two_commands() -> None:
    from tests.test_readme import _bash_blocks

    first_two = _bash_blocks((ROOT / "README.md").read_text())[:2]
    assert _bash_blocks((ROOT / "docs" / "getting-started.md").read_text())[:2] == first_two


def test_the_test_extra_installs_the_site_builder() -> None:
    setup = (ROOT / "setup.py").read_text()
    test_extra = re.search(r'"test": \[(.*?)\],\n', setup, flags=re.S)
    assert test_extra is not None
    for package in ("mkdocs", "mkdocs-material", "mkdocstrings[python]"):
        assert f'"{package}' in test_extra.group(1), package

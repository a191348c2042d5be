"""The README's and the documentation site's commands are the ones CI and the tests run.

The README and the pages of ``docs/`` (in the order mkdocs.yml's nav lists them) are read as one
text (:func:`doc_text`): every ```python block runs here, every ```bash line is run by a test
(named below), and ```text blocks hold what cannot run on a test machine (a multi-node torchrun, a
download from PyTorch's own index, a crontab line).
"""

import re
from pathlib import Path

from tests.helpers import mkdocs_config

ROOT = Path(__file__).resolve().parents[1]


def doc_pages() -> list[Path]:
    """README.md, then the site's pages in mkdocs.yml's nav order."""

    def walk(node) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [page for item in node for page in walk(item)]
        return [page for value in node.values() for page in walk(value)]

    nav = mkdocs_config(ROOT)["nav"]
    return [ROOT / "README.md", *(ROOT / "docs" / page for page in walk(nav))]


def doc_text() -> str:
    """The README and every page of the site, as one Markdown text."""
    return "\n".join(page.read_text(encoding="utf-8") for page in doc_pages())
#: the tracking server the README's registry workflow talks to: tests/test_registry_workflow.py runs
#: every block that names it, in order, against a real ``mlflow server`` in its place
README_SERVER = "http://mlflow:5000"
#: the demo's monitoring recipe, which tests/test_demo.py runs verbatim where the demo ran
DEMO_MONITOR = "sparsecheck monitor sparsecheck-demo/data/config.yaml --batch "
#: the text demo and its monitoring recipe (docs/text.md), which tests/text/test_text_demo.py runs verbatim
TEXT_DEMO = ("sparsecheck demo --text", "sparsecheck monitor sparsecheck-text-demo/data/config.yaml --batch ")
#: the demo's selection recipe (choosing what to label), which tests/test_demo.py runs verbatim where the demo ran
DEMO_SELECT = ("sparsecheck select sparsecheck-demo/data/config.yaml ",
               "sparsecheck weak-labels sparsecheck-demo/data/config.yaml ")


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def server_blocks(text: str | None = None) -> list[tuple[str, str]]:
    """The README's ```python and ```bash blocks that talk to :data:`README_SERVER`, in order, as
    ``(language, code)``: the registry workflow."""
    text = doc_text() if text is None else text
    return [(lang, code.strip()) for lang, code in re.findall(r"```(python|bash)\n(.*?)```", text, flags=re.S)
            if README_SERVER in code]


def test_ci_runs_the_readme_test_command():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    demo_cmd, test_cmd = blocks[0], blocks[1]
    assert demo_cmd.endswith("sparsecheck demo") and "pip install -e ." in demo_cmd
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci, "the README's test command must appear verbatim in .ci/run"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    """Every ```python block of the README and the site runs (in order, one namespace), from a
    scratch dir; those that talk to the tracking server run in tests/test_registry_workflow.py,
    against a real one."""
    blocks = re.findall(r"```python\n(.*?)```", doc_text(), flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        if README_SERVER not in block:
            exec(compile(block, "README.md", "exec"), namespace)


def test_other_readme_shell_commands_are_run_by_tests():
    """Beyond install+demo and the tests (the README's first two blocks, repeated in Getting
    started), the ```bash blocks hold only: the monitoring recipe, which
    tests/test_demo.py runs verbatim on the demo's batches (exactly the commands the demo prints);
    the extract recipe, which tests/test_extract.py runs verbatim in a small project (each of its
    lines, and only those); the selection recipe on the demo's pool, which tests/test_demo.py runs
    verbatim; the text demo and its monitoring recipe, which tests/text/test_text_demo.py runs
    verbatim; and the registry workflow, which tests/test_registry_workflow.py runs verbatim against
    a real tracking server."""
    from sparsecheck.cli import _demo_monitor_hint
    from tests.test_extract import RUNS_README_LINES, readme_extract_commands

    extract = readme_extract_commands()
    assert set(extract) == set(RUNS_README_LINES), "tests/test_extract.py must run every extract line"
    workflow = {line for lang, code in server_blocks() if lang == "bash" for line in code.splitlines()}
    assert len(workflow) == 3
    first_two = _bash_blocks((ROOT / "README.md").read_text())[:2]
    lines = [line for block in _bash_blocks(doc_text()) if block not in first_two for line in block.splitlines()]
    from tests.test_demo import readme_select_commands

    selecting = [line for line in lines if line.startswith(DEMO_SELECT)]
    assert selecting == readme_select_commands() and len(selecting) == 2  # tests/test_demo.py runs them
    from tests.text.test_text_demo import documented_text_demo_commands

    text = [line for line in lines if line.startswith(TEXT_DEMO)]
    assert text == documented_text_demo_commands() and len(text) == 3  # tests/text/test_text_demo.py runs them
    monitor = [line for line in lines if line not in extract and line not in workflow and line not in selecting
               and line not in text]
    for line in monitor:
        assert line.startswith(DEMO_MONITOR), line
    printed = _demo_monitor_hint(Path("sparsecheck-demo/data/config.yaml"), None).splitlines()[1:]
    assert monitor == [p.strip() for p in printed]
    assert all(" --out monitor-" in line for line in monitor)  # each writes its report where the reader looks

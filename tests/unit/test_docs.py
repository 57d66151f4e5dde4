"""The documentation says what the code does: the settings table is the settings model, links resolve,
the Layout diagram is the layers `test_layers` enforces, and the blocks' docs URL names a README heading."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tests.unit.test_layers import LAYERS

ROOT = Path(__file__).resolve().parents[2]
FOLDER_READMES = sorted(p for folder in ("core", "flows", "blocks", "deployments")
                        for p in (ROOT / folder).rglob("README.md"))
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *FOLDER_READMES]


def _load_generator():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "docs" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _load_generator()


def _prose(text: str) -> str:
    """`text` without its fenced code blocks (a `# comment` there is no heading, a `[x](y)` no link)."""
    return re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.S | re.M)


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


# --- the settings table ---------------------------------------------------------------------------

def _documented_rows() -> dict[str, tuple[str, str]]:
    text = GENERATOR.DOC.read_text()
    assert GENERATOR.BEGIN in text and GENERATOR.END in text, "docs/settings.md lost its table markers"
    table = text.split(GENERATOR.BEGIN, 1)[1].split(GENERATOR.END, 1)[0].strip().splitlines()
    assert tuple(table[:2]) == GENERATOR.HEADER
    rows = {}
    for line in table[2:]:
        variable, default, description = _cells(line)
        rows[variable.strip("`")] = (default, description)
    return rows


def test_the_settings_table_is_the_settings_model() -> None:
    """One row per field of `core/settings.py` (nested groups included): its variable, default and description."""
    model = {r.variable: (r.default, r.description.replace("\\|", "|")) for r in GENERATOR.setting_rows()}
    documented = _documented_rows()
    problems = [f"missing row: {v}" for v in model if v not in documented]
    problems += [f"extra row (no such setting): {v}" for v in documented if v not in model]
    problems += [f"stale row {v}: the docs say {documented[v]}, the model {model[v]}"
                 for v in model if v in documented and documented[v] != model[v]]
    assert problems == [], "; ".join(problems) + " (run `.venv/bin/python docs/settings_table.py`)"


def test_the_generator_leaves_the_page_unchanged() -> None:
    assert GENERATOR.rewrite(GENERATOR.DOC.read_text()) == GENERATOR.DOC.read_text()


class _Evaluator(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLUSTER_TRIGGERS_")
    sweep_seconds: float = Field(10.0, description="How often.")


class _Ports(BaseModel):
    api: int = Field(8080, description="Port of the API.")


class _Grouped(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLUSTER_TRIGGERS_", env_nested_delimiter="__")
    namespace: str = Field("default", description="Namespace.")
    evaluator: _Evaluator = Field(default_factory=_Evaluator, description="The evaluator's settings.")
    ports: _Ports = Field(default_factory=_Ports, description="Ports.")
    wake_url: str | None = Field(None, validation_alias="CLUSTER_TRIGGERS_WAKE_URL", description="Wake-ups.")


def test_nested_groups_are_read_as_pydantic_settings_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings regrouped into nested models keep one row per leaf, under the variable pydantic-settings reads."""
    rows = GENERATOR.setting_rows(_Grouped)
    assert [(r.variable, r.default) for r in rows] == [
        ("CLUSTER_TRIGGERS_NAMESPACE", "`default`"),
        ("CLUSTER_TRIGGERS_SWEEP_SECONDS", "`10.0`"),  # a group of its own: its own env_prefix
        ("CLUSTER_TRIGGERS_PORTS__API", "`8080`"),  # a plain model: nested under the delimiter
        ("CLUSTER_TRIGGERS_WAKE_URL", "unset"),  # an alias names the variable outright
    ]
    for variable, value in [("CLUSTER_TRIGGERS_SWEEP_SECONDS", "2.5"), ("CLUSTER_TRIGGERS_PORTS__API", "9090"),
                            ("CLUSTER_TRIGGERS_WAKE_URL", "http://x")]:
        monkeypatch.setenv(variable, value)
    read = _Grouped()
    assert (read.evaluator.sweep_seconds, read.ports.api, read.wake_url) == (2.5, 9090, "http://x")


def test_every_setting_the_docs_name_exists() -> None:
    known = {r.variable for r in GENERATOR.setting_rows()}
    named = {(page.relative_to(ROOT).as_posix(), v) for page in PAGES
             for v in re.findall(r"CLUSTER_TRIGGERS_[A-Z0-9_]*[A-Z0-9]", page.read_text())}
    assert sorted(f"{page}: {v}" for page, v in named if v not in known) == []


def test_other_tables_give_a_settings_default_as_the_model_does() -> None:
    """A table elsewhere with a `default` column (Running on other machines) agrees with the model."""
    defaults = {r.variable: r.default for r in GENERATOR.setting_rows()}
    wrong = []
    for page in PAGES:
        if page == GENERATOR.DOC:
            continue
        header: list[str] = []
        for line in _prose(page.read_text()).splitlines():
            if not line.startswith("|"):
                header = []
                continue
            cells = _cells(line)
            if not header:
                header = cells
                continue
            if "default" in header and cells[0].strip("`") in defaults:
                stated = cells[header.index("default")]
                if stated != defaults[cells[0].strip("`")]:
                    wrong.append(f"{page.relative_to(ROOT)}: {cells[0]} default {stated}, the model "
                                 f"{defaults[cells[0].strip('`')]}")
    assert wrong == []


# --- links ------------------------------------------------------------------------------------------

def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", _prose(page.read_text()), flags=re.M):
        slug = _slug(heading)
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    """Every link that is not a URL names an existing file or folder, and its `#anchor` a heading there."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / t).resolve() for t in re.findall(r"\]\((docs/[^)#\s]+)", (ROOT / "README.md").read_text())}
    assert sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.resolve() not in linked) == []


def test_the_blocks_docs_url_names_a_readme_heading() -> None:
    """The Prefect UI links each block to `_documentation_url`; its `#anchor` must still exist."""
    from prefect_cluster_triggers.blocks.saving import DOCS_URL

    assert "#" in DOCS_URL and DOCS_URL.split("#", 1)[1] in _anchors(ROOT / "README.md")


# --- the Layout diagram -----------------------------------------------------------------------------

def _path_of(prefix: str) -> str:
    """`deployments.api` -> `deployments/api/`; a module (`flows.clustering_flow`) -> its file."""
    folder = ROOT / prefix.replace(".", "/")
    return f"{prefix.replace('.', '/')}/" if folder.is_dir() else f"{prefix.replace('.', '/')}.py"


def test_the_layout_diagram_is_the_enforced_layers() -> None:
    """Each layer of `test_layers.LAYERS` is one box of the README's diagram, bottom first, naming its folders."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    diagram = section.split("```\n", 1)[1].split("```", 1)[0]
    boxes = [box for box in re.split(r"^ *\+-+\+ *$", diagram, flags=re.M) if box.strip(" \n|")]
    boxes = [box for box in boxes if "|" in box]
    names = [re.match(r"\s*\|\s*(\S+(?: \S+)?)", box).group(1).strip() for box in boxes]
    assert names == [name for name, _ in reversed(LAYERS)], "the diagram's boxes, top to bottom"
    for box, (name, prefixes) in zip(boxes, reversed(LAYERS)):
        assert [p for p in prefixes if _path_of(p) not in box] == [], f"the {name} box"


@pytest.mark.parametrize("readme", FOLDER_READMES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_folder_readme_names_each_of_its_modules(readme: Path) -> None:
    """A module split, moved or added shows in its folder's README (a subfolder without a README of its own included)."""
    folder = readme.parent
    covered = {p.parent for p in FOLDER_READMES if p != readme}
    modules = [p for p in folder.rglob("*.py") if p.name != "__init__.py"
               and not any(c in p.parents for c in covered if folder in c.parents)]
    text = readme.read_text()
    assert [p.relative_to(folder).as_posix() for p in modules
            if f"]({p.relative_to(folder).as_posix()})" not in text] == []

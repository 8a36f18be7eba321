"""The repository's promises: Binder builds the tested set, the doctor's pins match it, and every
notebook is stored run (in order, top to bottom), starts with prose, shows no machine paths and
links only to files that exist. The notebook checks look at whatever notebooks are there."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from agency_lib.doctor import REQUIRED

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(
    p
    for p in (REPO / "notebooks").rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("_twice_")  # .ci/run_twice.py's copies
)
MACHINE_PATHS = ("/root/", "/home/", "/tmp/", "site-packages")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<a\s[^>]*href=\"([^\"]+)\"")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
        if m:
            pins[_normalise(m.group(1))] = m.group(2)
    return pins


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


# -- Binder and pins --------------------------------------------------------------------------------
def test_binder_requirements_equal_requirements_txt():
    assert (REPO / "binder" / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()


def test_binder_runtime_is_exactly_python_3_11():
    assert (REPO / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert len((REPO / "binder" / "runtime.txt").read_text().splitlines()) == 1


def test_every_package_the_doctor_checks_is_pinned_at_the_same_version():
    pins = _pins(REPO / "requirements.txt")
    wrong = {
        name: (version, pins.get(_normalise(name), "not pinned"))
        for name, version in REQUIRED.items()
        if pins.get(_normalise(name)) != version
    }
    assert not wrong, f"doctor.REQUIRED vs requirements.txt: {wrong}"


def test_requirements_txt_pins_every_line():
    lines = [ln for ln in (REPO / "requirements.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines and all("==" in ln for ln in lines), [ln for ln in lines if "==" not in ln]


# -- notebooks --------------------------------------------------------------------------------------
def test_every_notebook_is_stored_run_top_to_bottom_in_one_kernel():
    problems = []
    for path in NOTEBOOKS:
        cells = [c for c in _read(path).cells if c.cell_type == "code" and c.source.strip()]
        counts = [c.get("execution_count") for c in cells]
        if not any(counts):
            problems.append(f"{_name(path)}: not run (no execution counts): Restart & Run All, then save")
        elif counts != list(range(1, len(cells) + 1)):
            problems.append(
                f"{_name(path)}: execution counts {counts}, not 1..{len(cells)}: Restart & Run All, then save"
            )
        elif not any(c.get("outputs") for c in cells):
            problems.append(f"{_name(path)}: no stored outputs")
    assert not problems, "\n".join(problems)


def test_every_notebook_starts_with_a_markdown_cell():
    problems = [_name(p) for p in NOTEBOOKS if not (_read(p).cells and _read(p).cells[0].cell_type == "markdown")]
    assert not problems, f"these notebooks do not open with a markdown cell: {problems}"


def _output_texts(output: nbformat.NotebookNode) -> list[str]:
    texts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
    for mime, value in output.get("data", {}).items():
        if not mime.startswith("image/"):  # images are base64: any 5 characters may appear by chance
            texts.append(value if isinstance(value, str) else str(value))
    return [t if isinstance(t, str) else "".join(t) for t in texts]


def test_no_notebook_output_shows_a_machine_path():
    problems = []
    for path in NOTEBOOKS:
        for i, cell in enumerate(_read(path).cells):
            for output in cell.get("outputs", []):
                for text in _output_texts(output):
                    for bad in MACHINE_PATHS:
                        if bad in text:
                            line = next(ln for ln in text.splitlines() if bad in ln)
                            problems.append(f"{_name(path)} cell {i}: {line.strip()[:120]}")
    assert not problems, "\n".join(problems)


def _github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    anchors |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", markdown))
    return anchors


def test_every_notebook_link_points_to_a_file_that_exists():
    problems = []
    for path in NOTEBOOKS:
        for i, cell in enumerate(_read(path).cells):
            if cell.cell_type != "markdown":
                continue
            for m in LINK.finditer(cell.source):
                target = m.group(1) or m.group(2)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue  # web links and anchors inside the notebook
                file_part, _, anchor = target.partition("#")
                linked = (path.parent / file_part).resolve()
                if not linked.exists():
                    problems.append(f"{_name(path)} cell {i}: {target} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in _github_anchors(linked.read_text()):
                    problems.append(f"{_name(path)} cell {i}: {target} (no heading #{anchor} in {linked.name})")
    assert not problems, "\n".join(problems)


# -- launch links -----------------------------------------------------------------------------------
# The repository's public name, defined here and only here. Every Binder and nbgitpuller link in
# README.md, docs/ and the notebooks must use it. Teaching from a fork: change it here, rewrite the
# links (docs/instructor-guide.md, "Teaching from a fork", has the one-line sed), then `make test`.
PUBLIC_REPO = "async-agency/async-agency"
BINDER = re.compile(r"https://mybinder\.org/v2/gh/([^/\s]+/[^/\s]+)/([^?\s)`>\"]+)(\?[^\s)`>\"]*)?")
GIT_PULL = re.compile(r"https?://[^\s)`>\"]*/git-pull\?[^\s)`>\"]+")


def _link_sources() -> dict[str, str]:
    sources = {_name(p): p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]}
    for path in NOTEBOOKS:
        sources[_name(path)] = "\n".join(c.source for c in _read(path).cells if c.cell_type == "markdown")
    return sources


def _launch_links() -> list[tuple[str, str, str, str]]:
    """(file, link, repository named, notebook path opened or '') for every launch link."""
    from urllib.parse import parse_qs, unquote, urlsplit

    links = []
    for name, text in _link_sources().items():
        for m in BINDER.finditer(text):
            urlpath = parse_qs((m.group(3) or "?")[1:]).get("urlpath", [""])[0]
            notebook = urlpath.removeprefix("lab/tree/") if urlpath.startswith("lab/tree/") else urlpath
            links.append((name, m.group(0), m.group(1), notebook))
        for m in GIT_PULL.finditer(text):
            query = parse_qs(urlsplit(m.group(0)).query)
            repo = unquote(query.get("repo", [""])[0]).removeprefix("https://github.com/").removesuffix(".git")
            urlpath = query.get("urlpath", [""])[0]
            # nbgitpuller clones into a folder named after the repository: lab/tree/<name>/notebooks/...
            prefix = f"lab/tree/{PUBLIC_REPO.split('/')[1]}/"
            notebook = urlpath.removeprefix(prefix) if urlpath.startswith(prefix) else urlpath
            links.append((name, m.group(0), repo, notebook))
    return links


def test_readme_and_docs_have_launch_links_to_check():
    """So that the checks below cannot pass by finding no link at all."""
    links = _launch_links()
    assert any(name == "README.md" for name, *_ in links), "README.md has no Binder link"
    assert any(name.startswith("docs/") and "git-pull" in link for name, link, *_ in links), (
        "docs/ has no nbgitpuller link"
    )


def test_every_launch_link_uses_the_public_name_and_opens_a_notebook_that_exists():
    problems = []
    for name, link, repo, notebook in _launch_links():
        if repo != PUBLIC_REPO:
            problems.append(
                f"{name}: {link[:100]} names {repo!r}, not {PUBLIC_REPO!r} (tests/test_repo.py PUBLIC_REPO)"
            )
        if not notebook:
            problems.append(f"{name}: {link[:100]} opens no notebook (add urlpath=lab/tree/notebooks/NN_x.ipynb)")
        elif not notebook.endswith(".ipynb") or not (REPO / notebook).is_file():
            problems.append(f"{name}: {link[:100]} opens {notebook}, which is not a notebook in this repository")
    assert not problems, "\n".join(problems)


def test_the_public_name_is_not_spelt_another_way():
    """A hand-edited link (another owner, a typo) that the launch-link patterns did not parse still shows up here."""
    owner, repo = PUBLIC_REPO.split("/")
    pattern = re.compile(rf"mybinder\.org/v2/gh/(?!{re.escape(PUBLIC_REPO)}/)|github\.com%2F(?!{owner}%2F{repo}\b)")
    problems = [
        f"{name}: {text[m.start() : m.end() + 40]}…"
        for name, text in _link_sources().items()
        for m in pattern.finditer(text)
    ]
    assert not problems, "\n".join(problems)


def test_every_relative_link_in_readme_and_docs_points_to_a_file_that_exists():
    """README.md and docs/ (markdown and the printable card) link only to files, and headings, that exist."""
    problems = []
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "docs").glob("*.html"))]
    for page in pages:
        text = re.sub(r"```.*?```|`[^`\n]*`", "", page.read_text(), flags=re.S)  # code shows examples, not links
        for m in LINK.finditer(text):
            target = m.group(1) or m.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # web links
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                problems.append(f"{_name(page)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _github_anchors(linked.read_text()):
                problems.append(f"{_name(page)}: {target} (no heading #{anchor} in {linked.name})")
    assert not problems, "\n".join(problems)

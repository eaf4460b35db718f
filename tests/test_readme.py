"""README and docs/ hold together for a user's clone (issue 15, items 7 and 9): nothing points
outside the repository, commands use the virtual environment the two commands create, every
file a command reads is written by a documented command, the Python snippets compile."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))}
# fenced blocks; markdown strips a list item's indentation from its block, so do we
BLOCKS = [(lang, re.sub(r"(?m)^  ", "", code) if indented else code)
          for indented, lang, code in re.findall(r"(?ms)^( *)```(\w+)\n(.*?)^ *```", README)]
SHELL = "\n".join(code for lang, code in BLOCKS if lang == "bash")
INLINE = re.findall(r"`([^`]+)`", re.sub(r"(?ms)^ *```.*?^ *```", "", README))


@pytest.mark.parametrize("name", ["README.md", *DOCS])
def test_no_reference_outside_the_repository(name):
    text = README if name == "README.md" else DOCS[name]
    assert "../shared" not in text and "shared/spec" not in text


def test_readme_links_to_docs_that_exist():
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / target).is_file(), target
    assert "docs/GRSN.md" in README


def test_commands_use_the_virtual_environment():
    """A bare `python` / `pip` would be whatever the user's shell finds, not the environment the
    two commands install into (python3 creates that environment and is allowed)."""
    commands = SHELL.splitlines() + INLINE
    bare = [c for c in commands if re.search(r"(^|[\s(;&|=])(python|pip) +\S", c)]
    assert not bare, bare


def test_every_file_a_command_reads_is_written_by_one():
    """energy_report --models reads saved models: a documented command must --save them first."""
    saved = {path + ".zip" for path in re.findall(r"--save (\S+)", SHELL)}
    read = {path for path in re.findall(r"--models\s+((?:\S+=\S+\s*)+)", SHELL)
            for path in re.findall(r"=(\S+)", path)}
    assert read, "no --models command found"
    assert read <= saved, read - saved


def test_python_snippets_compile_and_the_multi_agent_one_prints():
    snippets = [code for lang, code in BLOCKS if lang == "python"]
    assert len(snippets) >= 3
    for code in snippets:
        compile(code, "<README snippet>", "exec")
    marl = [code for code in snippets if "PettingZooVecEnv" in code]
    assert len(marl) >= 1 and "print(" in marl[0]
    for code in marl:  # each one that needs an extra says so next to it
        before = README[:README.index(code)].rsplit("```", 1)[0][-600:]
        assert "'.[marl]'" in before

"""The README's two fresh-machine commands are what CI and users run."""

import re

from s3d_pipeline.paths import REPO_ROOT


def _setup_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Two commands on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one_verbatim():
    commands = _setup_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    demo, tests = commands
    assert "s3d-nerf generate" in demo and "pytest" in tests
    assert tests in (REPO_ROOT / ".ci" / "run").read_text()

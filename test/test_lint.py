"""ament's lint checks (ament_flake8, ament_pep257, ament_copyright), project-wide and without ROS 2.

flake8 runs with the [flake8] section of setup.cfg; the docstring and license checks are lighter stand-ins
for ament_pep257 and ament_copyright: every module has a docstring, and the license is declared the same
way everywhere, with its text in LICENSE.
"""
import ast
from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Everything Python that the project ships or runs; setup.cfg's [flake8] excludes .venv, build, install, log.
FLAKE8_TARGETS = ("depth_completion_ros", "test", "benchmarks", "launch", "setup.py")
DOCSTRING_DIRS = ("depth_completion_ros", "launch")
LICENSE = "Apache-2.0"


def _python_files(folder: str) -> list[Path]:
    return sorted(path for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts)


def test_flake8_reports_nothing():
    pytest.importorskip("flake8")
    result = subprocess.run([sys.executable, "-m", "flake8", *FLAKE8_TARGETS], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    report = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or report:
        pytest.fail(f"flake8 (exit status {result.returncode}) reports:\n{report}", pytrace=False)


def test_every_module_has_a_docstring():
    files = [path for folder in DOCSTRING_DIRS for path in _python_files(folder)]
    assert files, f"no Python files found under {DOCSTRING_DIRS} in {ROOT}"
    missing = [str(path.relative_to(ROOT)) for path in files
               if ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))) is None]
    assert not missing, "modules without a module docstring:\n" + "\n".join(missing)


def _setup_py_license() -> str:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"]
    assert len(calls) == 1, "setup.py should call setup() once"
    licenses = [keyword.value for keyword in calls[0].keywords if keyword.arg == "license"]
    assert len(licenses) == 1 and isinstance(licenses[0], ast.Constant), "setup() needs a literal license="
    return licenses[0].value


def test_license_is_declared_consistently():
    package_licenses = [element.text.strip() for element in ElementTree.parse(ROOT / "package.xml").iter("license")]
    assert package_licenses == [LICENSE], f"package.xml declares {package_licenses}"
    assert _setup_py_license() == LICENSE
    license_file = ROOT / "LICENSE"
    assert license_file.is_file(), "the license text belongs in LICENSE at the repository root"
    text = license_file.read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text, "LICENSE is not the Apache 2.0 text"

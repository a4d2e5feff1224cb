"""package.xml against the code: every dependency it declares is used, every one the code uses is declared.

Without ROS 2: the imports are read from the sources with `ast`, setup.py's requirements from its literal
lists, and package.xml with ElementTree.

- A ROS package the code imports (depth_completion_ros/, launch/) is an exec_depend, and an exec_depend is
  either imported or one of the runtime pieces the launch files start (RUNTIME_PIECES).
- A Python library the code imports is in setup.py's install_requires (the runtime) or its "train" extra
  (PyTorch, onnx: TRAIN_ONLY); where rosdep has a key for a runtime library, that key is an exec_depend, and no
  other Python key is (NO_ROSDEP_KEY names the libraries without one, which package.xml must say in a comment).
- setup.py's "test" extra, with the "train" extra it pulls in, maps onto the python test_depends the same way
  (package.xml has no optional dependencies: the train extra's keys sit with the tests that need them);
  test/'s ROS imports are declared.
- cv_bridge and sensor_msgs_py are declared only if the code imports them (it converts messages itself).
"""
import ast
from pathlib import Path
import re
import sys
import xml.etree.ElementTree as ElementTree

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "depth_completion_ros"
CODE_DIRS = (PACKAGE, "launch")

# setup.py distribution -> (module it provides, its rosdep key or None where rosdep has none).
DISTRIBUTIONS = {
    "setuptools": ("setuptools", "python3-setuptools"),
    "numpy": ("numpy", "python3-numpy"),
    "pyyaml": ("yaml", "python3-yaml"),
    "tqdm": ("tqdm", "python3-tqdm"),
    "pillow": ("PIL", "python3-pil"),
    "matplotlib": ("matplotlib", "python3-matplotlib"),
    "scipy": ("scipy", "python3-scipy"),
    # python3-torch (apt) is older than torch>=2.1 on Ubuntu 22.04 and missing on 24.04: the pip key it is.
    "torch": ("torch", "python3-pytorch-pip"),
    "rosbags": ("rosbags", "python3-rosbags-pip"),
    "onnxruntime": ("onnxruntime", "python3-onnxruntime-pip"),
    "onnx": ("onnx", None),
    # rosdep's python3-numba resolves on Ubuntu bionic and focal only, not on Humble's jammy or Jazzy's noble.
    "numba": ("numba", None),
    "pytest": ("pytest", "python3-pytest"),
    "flake8": ("flake8", "python3-flake8"),
    "colcon-common-extensions": ("colcon_core", "python3-colcon-common-extensions"),
    "pykitti": ("pykitti", None),  # test extra only (test/test_synth_raw_readers.py); pip installs it
    "opencv-python-headless": ("cv2", "python3-opencv"),  # the morphological fill (baselines.py)
}
NO_ROSDEP_KEY = {"onnx", "numba"}
# What the "train" extra adds to the runtime: never an install requirement (a robot runs the ONNX files).
TRAIN_ONLY = {"torch", "onnx"}
# Python modules whose ROS package has another name.
ROS_PACKAGE_OF_MODULE = {"tf2_ros": "tf2_ros_py"}
# Declared although no Python code imports them: what the launch files run, each with (file, text) showing it.
RUNTIME_PIECES = {
    "ros2bag": ("launch/bag_replay.launch.py", '"ros2", "bag", "play"'),
    "rosbag2_storage_mcap": ("depth_completion_ros/data/rosbag.py", '"jazzy": BagFormat(Stores.ROS2_JAZZY, 9, "mcap")'),
    "rclcpp_components": ("launch/bag_replay.launch.py", 'package="rclcpp_components"'),
    "depth_image_proc": ("launch/bag_replay.launch.py", 'package="depth_image_proc"'),
    "rviz2": ("launch/depth_completion.launch.py", 'package="rviz2"'),
}
NOT_WANTED_UNLESS_IMPORTED = ("cv_bridge", "sensor_msgs_py")


def _python_files(folder: str) -> list[Path]:
    return sorted(path for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts)


def imported_modules(folders, local=()) -> set[str]:
    """Top-level names of every absolute import (module level or inside functions) and of every
    `pytest.importorskip("name")`, less the standard library, this package and `local` names."""
    names = set()
    for folder in folders:
        for path in _python_files(folder):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
                elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip"
                      and node.args and isinstance(node.args[0], ast.Constant)):
                    names.add(str(node.args[0].value).split(".")[0])
    return names - set(sys.stdlib_module_names) - {PACKAGE, "__future__"} - set(local)


def code_imports() -> set[str]:
    return imported_modules(CODE_DIRS)


def imports_of_tests() -> set[str]:
    """What test/ imports, less its own modules (conftest, ros_support, ...)."""
    return imported_modules(["test"], local={path.stem for path in _python_files("test")})


def _setup_keywords() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    return {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords
            if keyword.arg in ("install_requires", "extras_require")}


def _names(requirements, extras: dict) -> list[str]:
    """Distribution names (lower case, no version) of requirements; "depth_completion_ros[x]" stands for extra x."""
    names = []
    for requirement in requirements:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()
        if name == PACKAGE:
            for extra in re.findall(r"\[(.*?)\]", requirement)[0].split(","):
                names += _names(extras[extra.strip()], extras)
        else:
            names.append(name)
    return names


def setup_requirements() -> tuple[list[str], list[str]]:
    """(install_requires, extras_require["test"] with the extras it pulls in) of setup.py as distribution names."""
    keywords = _setup_keywords()
    extras = keywords.get("extras_require", {})
    return _names(keywords["install_requires"], extras), _names(extras.get("test", []), extras)


def extra_requirements(name: str) -> list[str]:
    """extras_require[name] of setup.py as distribution names."""
    extras = _setup_keywords().get("extras_require", {})
    return _names(extras.get(name, []), extras)


def runtime_and_train() -> list[str]:
    """What the code may import: the install requirements and the train extra."""
    return setup_requirements()[0] + extra_requirements("train")


def modules_of(distributions) -> set[str]:
    return {DISTRIBUTIONS[name][0] for name in distributions if name in DISTRIBUTIONS}


def keys_of(distributions, modules=None) -> set[str]:
    """The rosdep keys of `distributions` (those providing one of `modules`, when given)."""
    known = [DISTRIBUTIONS[name] for name in distributions if name in DISTRIBUTIONS]
    return {key for module, key in known if key and (modules is None or module in modules)}


def manifest() -> dict[str, list[str]]:
    root = ElementTree.parse(ROOT / "package.xml").getroot()
    return {tag: [element.text.strip() for element in root.iter(tag)]
            for tag in ("exec_depend", "test_depend", "depend", "build_depend")}


def split_keys(dependencies) -> tuple[set[str], set[str]]:
    """(python keys, ROS packages) of a list of package.xml dependencies."""
    python = {name for name in dependencies if name.startswith("python3-")}
    return python, set(dependencies) - python


def ros_packages(modules) -> set[str]:
    return {ROS_PACKAGE_OF_MODULE.get(module, module) for module in modules}


def _difference(what: str, declared: set[str], expected: set[str]) -> str:
    return f"{what}: missing {sorted(expected - declared)}, not used {sorted(declared - expected)}"


def test_every_setup_requirement_is_known_here():
    install_requires, test_extra = setup_requirements()
    unknown = sorted(set(install_requires + test_extra + extra_requirements("train")) - set(DISTRIBUTIONS))
    assert not unknown, f"add these setup.py requirements to DISTRIBUTIONS (module, rosdep key or None): {unknown}"


def test_no_duplicate_or_generic_dependencies():
    declared = manifest()
    assert not declared["depend"] and not declared["build_depend"], \
        "an ament_python package builds nothing against its dependencies: use exec_depend / test_depend"
    for tag in ("exec_depend", "test_depend"):
        duplicates = sorted({name for name in declared[tag] if declared[tag].count(name) > 1})
        assert not duplicates, f"{tag} lists {duplicates} more than once"


def test_python_exec_depends_are_the_keys_of_the_imported_libraries():
    install_requires, _ = setup_requirements()
    declared, _ = split_keys(manifest()["exec_depend"])
    expected = keys_of(install_requires, code_imports())
    assert declared == expected, _difference("python exec_depends (keys of the libraries the code imports)",
                                             declared, expected)


def test_imported_libraries_without_a_key_are_named_in_package_xml():
    imported = code_imports()
    keyless = {name for name in runtime_and_train()
               if name in DISTRIBUTIONS and DISTRIBUTIONS[name][1] is None and DISTRIBUTIONS[name][0] in imported}
    assert keyless == NO_ROSDEP_KEY
    comments = " ".join(re.findall(r"<!--(.*?)-->", (ROOT / "package.xml").read_text(encoding="utf-8"), re.S))
    for name in sorted(keyless):
        assert re.search(rf"\b{re.escape(name)}\b[^.]*no rosdep key", comments), \
            f"package.xml should say in a comment that {name} has no rosdep key"


def test_ros_exec_depends_are_the_imported_ros_packages_and_the_launched_pieces():
    # Whatever the code imports that setup.py does not provide counts as a ROS package.
    expected = ros_packages(code_imports() - modules_of(runtime_and_train())) | set(RUNTIME_PIECES)
    _, declared = split_keys(manifest()["exec_depend"])
    assert declared == expected, _difference("ROS exec_depends (imported ROS packages and RUNTIME_PIECES)",
                                             declared, expected)


def test_runtime_pieces_are_what_the_launch_files_start():
    absent = sorted(piece for piece, (path, evidence) in RUNTIME_PIECES.items()
                    if evidence not in (ROOT / path).read_text(encoding="utf-8"))
    assert not absent, f"nothing uses {absent} any more: drop them from package.xml and RUNTIME_PIECES"


def test_every_imported_third_party_module_is_declared():
    install_requires, test_extra = setup_requirements()
    declared = manifest()
    ros_exec, ros_test = split_keys(declared["exec_depend"])[1], split_keys(declared["test_depend"])[1]
    undeclared_code = sorted(module for module in code_imports() - modules_of(runtime_and_train())
                             if ROS_PACKAGE_OF_MODULE.get(module, module) not in ros_exec)
    undeclared_test = sorted(module for module in imports_of_tests() - modules_of(install_requires + test_extra)
                             if ROS_PACKAGE_OF_MODULE.get(module, module) not in ros_exec | ros_test)
    assert not undeclared_code, f"imported by the package but in neither setup.py nor package.xml: {undeclared_code}"
    assert not undeclared_test, f"imported by the tests but in neither setup.py nor package.xml: {undeclared_test}"


def test_test_depends_are_the_test_extra_and_the_ros_packages_only_tests_import():
    install_requires, test_extra = setup_requirements()
    declared_python, declared_ros = split_keys(manifest()["test_depend"])
    assert declared_python == keys_of(test_extra), _difference("python test_depends (setup.py's test extra)",
                                                               declared_python, keys_of(test_extra))
    ros_exec = split_keys(manifest()["exec_depend"])[1]
    test_only = ros_packages(imports_of_tests() - modules_of(install_requires + test_extra)) - ros_exec
    assert declared_ros == test_only, _difference("ROS test_depends (ROS packages only the tests import)",
                                                  declared_ros, test_only)


def test_cv_bridge_and_sensor_msgs_py_only_when_imported():
    imported = code_imports() | imports_of_tests()
    declared = set(manifest()["exec_depend"]) | set(manifest()["test_depend"])
    for name in NOT_WANTED_UNLESS_IMPORTED:
        assert (name in declared) == (name in imported), \
            f"{name}: {'declared but not imported' if name in declared else 'imported but not declared'}"


# ROS packages of ROS 2's core that the registry's wheels provide as dependencies of rclpy (no wheel to name).
WITH_RCLPY = {"rclpy", "rcl_interfaces", "builtin_interfaces", "ament_index_python", "rosidl_parser"}
# ROS packages the registry does not publish, each with what stands in for it on the pip-only route.
NOT_ON_THE_REGISTRY = {"tf2_ros_py": "the node's own /tf listener", "tf2_msgs": "dcros ros-setup builds it",
                       "launch": "the launch files only", "launch_ros": "the launch files only"}


def test_the_ros_extra_pins_every_ros_package_the_code_imports_from_the_registry():
    """`pip install .[ros]` (the pip-only route and CI) gives the node every ROS package it imports: rclpy and
    the message packages as exact-version wheels; what the registry lacks has its stand-in."""
    extras = _setup_keywords()["extras_require"]
    wheels = {}
    for requirement in extras["ros"]:
        match = re.fullmatch(r"ros-jazzy-([a-z0-9-]+)(\[[a-z]+\])?==[0-9.]+", requirement)
        if requirement.startswith("ros-jazzy-"):
            assert match, f"pin the registry's ROS 2 wheels to one version: {requirement}"
            wheels[match.group(1).replace("-", "_")] = requirement
    imported = ros_packages(code_imports() - modules_of(runtime_and_train()))
    missing = sorted(imported - set(wheels) - WITH_RCLPY - set(NOT_ON_THE_REGISTRY))
    assert not missing, f"the ros extra lacks wheels for {missing}"
    assert "ros-jazzy-rclpy[fastrtps]" in wheels["rclpy"]  # the middleware comes with the extra


def test_the_runtime_install_leaves_pytorch_and_onnx_to_the_train_extra():
    """A robot's install (install_requires, package.xml's exec_depends) has no PyTorch; the train extra brings it and
    the test extra pulls the train extra in."""
    install_requires, test_extra = setup_requirements()
    assert not TRAIN_ONLY & set(install_requires)
    assert set(extra_requirements("train")) == TRAIN_ONLY and TRAIN_ONLY <= set(test_extra)
    assert "python3-pytorch-pip" not in manifest()["exec_depend"]
    assert "python3-pytorch-pip" in manifest()["test_depend"]

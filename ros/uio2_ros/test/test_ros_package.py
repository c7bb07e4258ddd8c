"""Static checks for what this CI cannot run (colcon, ros2 launch): the package is well formed.

- the launch file compiles and starts executables that setup.py installs
- every key of the parameters YAML is declared by the node, with the right type
- package.xml (format 3, ament_python) names every ROS package the node imports
- the package's code parses as Python 3.10 (Humble) and only the node imports rclpy
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from uio2_ros.params import NODE_NAME, PARAMETERS, check_values, runner_config

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "uio2_ros").glob("*.py"))
ROS_PACKAGES = {"rclpy", "rcl_interfaces", "std_msgs", "geometry_msgs", "sensor_msgs", "nav_msgs", "launch",
                "diagnostic_msgs",
                "launch_ros", "ament_index_python", "builtin_interfaces"}  # fmt: skip


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _entry_points() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    specs = [ast.literal_eval(v) for v in value.elts]
                    return dict(s.replace(" ", "").split("=", 1) for s in specs)
    raise AssertionError("setup.py has no console_scripts")


def test_launch_file_compiles_and_its_executables_are_installed():
    launch = ROOT / "launch" / "uio2_policy.launch.py"
    compile(launch.read_text(), str(launch), "exec")
    tree = ast.parse(launch.read_text())
    functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    executables = {kw.value.value for n in ast.walk(tree) if isinstance(n, ast.Call)
                   for kw in n.keywords if kw.arg == "executable"}  # fmt: skip
    names = {kw.value.value for n in ast.walk(tree) if isinstance(n, ast.Call)
             for kw in n.keywords if kw.arg == "name" and isinstance(kw.value, ast.Constant)}  # fmt: skip
    entry_points = _entry_points()
    assert executables and executables <= set(entry_points), (executables, entry_points)
    assert NODE_NAME in names  # the YAML's top-level key matches the node the launch file starts
    for target in entry_points.values():
        module, func = target.split(":")
        source = ROOT / (module.replace(".", "/") + ".py")
        assert re.search(rf"^def {func}\(", source.read_text(), re.M), f"{target} does not exist"


def test_every_yaml_parameter_is_declared_with_its_type():
    doc = yaml.safe_load((ROOT / "config" / "uio2_policy.yaml").read_text())
    assert list(doc) == [NODE_NAME]
    values = doc[NODE_NAME]["ros__parameters"]
    undeclared = set(values) - set(PARAMETERS)
    assert not undeclared, f"YAML sets parameters the node does not declare: {sorted(undeclared)}"
    check_values(values)
    runner_config(values)  # and together they make a valid configuration
    for name, value in values.items():  # ROS parameters are statically typed: a float stays a float
        assert type(value) is type(PARAMETERS[name][0]), (name, value)


def test_parameter_checks_name_the_problem():
    with pytest.raises(ValueError, match="unknown parameter 'max_speed'"):
        check_values({"max_speed": 1.0})
    with pytest.raises(ValueError, match="'stamped'"):
        check_values({"stamped": "yes"})
    with pytest.raises(ValueError, match="pair up"):
        runner_config({"image_topics": ["/a", "/b"]})
    with pytest.raises(ValueError, match="workspace_low"):
        runner_config({"workspace_low": [1.0, 1.0]})


def test_the_node_declares_parameters_from_the_table():
    tree = ast.parse((ROOT / "uio2_ros" / "policy_node.py").read_text())
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For) and isinstance(n.iter, ast.Call)
             and ast.unparse(n.iter) == "PARAMETERS.items()"]  # fmt: skip
    assert loops and "declare_parameter" in ast.unparse(loops[0])


def test_package_xml_is_format_3_ament_python_and_covers_the_imports():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "uio2_ros"
    assert root.find("export/build_type").text == "ament_python"
    depends = {e.text for tag in ("depend", "exec_depend") for e in root.findall(tag)}
    used = set()
    for path in [*SOURCES, ROOT / "launch" / "uio2_policy.launch.py"]:
        used |= _imports(path) & ROS_PACKAGES
    missing = used - depends
    assert not missing, f"package.xml lacks exec_depend on {sorted(missing)}"
    assert (ROOT / "resource" / "uio2_ros").is_file()
    cfg = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/uio2_ros" in cfg and "install_scripts=$base/lib/uio2_ros" in cfg


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_code_is_python_3_10_and_only_the_node_imports_ros(path):
    ast.parse(path.read_text(), feature_version=(3, 10))
    ros = _imports(path) & ROS_PACKAGES
    if path.name != "policy_node.py":
        assert not ros, f"{path.name} imports {sorted(ros)}: only policy_node.py may import ROS"

"""ament_python build of uio2_ros (colcon build; also pip-installable for the PyPI ROS wheels)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "uio2_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools", "numpy", "pillow", "rosbags==0.11.9"],
    zip_safe=True,
    maintainer="uio2-embodied maintainers",
    maintainer_email="maintainers@uio2-embodied.invalid",
    description="Deploy a uio2-embodied agent on a ROS 2 robot",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "policy_node = uio2_ros.policy_node:main",
            "bag_to_dataset = uio2_ros.bag_to_dataset:main",
        ],
    },
)

"""Launch the uio2 policy node with the package's parameters YAML (override with params_file:=...)."""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    default_params = str(Path(get_package_share_directory("uio2_ros")) / "config" / "uio2_policy.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameters YAML for the uio2_policy node"),
        Node(
            package="uio2_ros",
            executable="policy_node",
            name="uio2_policy",
            parameters=[LaunchConfiguration("params_file")],
            output="screen",
        ),
    ])  # fmt: skip

#!/usr/bin/env bash
# The real-rclpy tier of the tests: a second venv from the pinned PyPI ROS 2 Jazzy wheels
# (ycheng517/ros-python-wheels; see the README's ROS section), network-isolated.
#
#   single-process tests: ROS_AUTOMATIC_DISCOVERY_RANGE=OFF (no packet leaves the process)
#   multi-process tests:  inside `unshare -n` (only loopback exists) with ..._RANGE=LOCALHOST;
#                         skipped, saying so, where no network namespace can be made
#
# An install failure is a test failure: it says so loudly and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${UIO2_ROS_VENV:-.venv-ros}
PINS=(
  "ros-jazzy-rclpy[fastrtps]==7.1.6"
  "ros-jazzy-std-msgs==5.3.6"
  "ros-jazzy-geometry-msgs==5.3.6"
  "ros-jazzy-sensor-msgs==5.3.6"
  "ros-jazzy-nav-msgs==5.3.6"
  "ros-jazzy-diagnostic-msgs==5.3.6"
)
TESTS=(ros/uio2_ros/test/test_ros_rclpy_node.py ros/uio2_ros/test/test_ros_rclpy_bag.py
       ros/uio2_ros/test/test_ros_rclpy_faults.py)
MULTIPROC=(ros/uio2_ros/test/test_ros_rclpy_multiproc.py)

rm -rf "$VENV"
python3 -m venv "$VENV"
if ! "$VENV/bin/pip" install -q "${PINS[@]}" -e . "pytest>=8" "pyyaml>=6" "rosbags==0.11.9"; then
  echo "ERROR: could not install the pinned ROS 2 Jazzy wheels into $VENV; the rclpy tests did NOT run" >&2
  exit 1
fi
"$VENV/bin/python" -c "import rclpy, sensor_msgs.msg, geometry_msgs.msg, nav_msgs.msg, diagnostic_msgs.msg" || {
  echo "ERROR: rclpy from the ROS wheels does not import; the rclpy tests did NOT run" >&2
  exit 1
}

pytest_args=(-p no:cacheprovider -o "testpaths=")  # pyproject addopts already has -q: keep the summary line
echo "+ rclpy single-process tests (ROS_AUTOMATIC_DISCOVERY_RANGE=OFF)"
ROS_AUTOMATIC_DISCOVERY_RANGE=OFF ROS_DOMAIN_ID=42 "$VENV/bin/python" -m pytest "${pytest_args[@]}" "${TESTS[@]}"

if unshare -n true 2>/dev/null; then
  echo "+ rclpy multi-process tests inside a network namespace (loopback only, LOCALHOST discovery)"
  unshare -n env VENV="$VENV" bash -c '
    set -euo pipefail
    ip link set lo up
    export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=42 UIO2_ROS_NETNS=1
    "$VENV/bin/python" -m pytest -p no:cacheprovider -o testpaths= '"${MULTIPROC[*]}"
else
  echo "SKIPPED: multi-process rclpy tests need a network namespace (unshare -n), which this machine refuses"
fi

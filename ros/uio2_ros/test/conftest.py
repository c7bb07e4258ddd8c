"""Shared fixtures for the ROS package's tests. rclpy tests refuse to run DDS with default discovery."""

from __future__ import annotations

import os

import pytest

RCLPY_SKIP = (
    "rclpy is not installed here: ros/ci/test_rclpy.sh runs these tests in a venv of the PyPI ROS 2 wheels"
)


@pytest.fixture
def ros_context():
    """A private rclpy context; discovery must be OFF (one process) or LOCALHOST (inside `unshare -n`)."""
    rclpy = pytest.importorskip("rclpy", reason=RCLPY_SKIP)
    scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    if scope not in ("OFF", "LOCALHOST"):
        pytest.fail(f"ROS_AUTOMATIC_DISCOVERY_RANGE={scope!r}: refusing to run DDS with default discovery")
    context = rclpy.context.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)

"""uio2_ros: deploy a uio2-embodied agent on a ROS 2 robot.

Only `uio2_ros.policy_node` imports rclpy; every other module is ROS-free (duck-typed on the
standard message field names) so it runs and is tested without a ROS install.
"""

"""Every parameter of the policy node: name, default, and what it is for.

The node declares exactly these (so `ros2 param list` shows them all, with descriptions), the YAML
in config/ may only set these (checked by a test), and `runner_config` turns them into the ROS-free
runner's configuration. Defaults are the safe ones: the robot starts disabled and slow.
"""

from __future__ import annotations

from typing import Any

from uio2_ros.motion import DiscreteMotion
from uio2_ros.runner import VIMA_WORKSPACE_HIGH, VIMA_WORKSPACE_LOW, RunnerConfig
from uio2_ros.safety import Limits

NODE_NAME = "uio2_policy"

# name: (default, description). Types follow the defaults (ROS parameters are statically typed).
PARAMETERS: dict[str, tuple[Any, str]] = {
    # the policy
    "policy": ("uio2", "uio2 | random | remote://HOST:PORT (a `uio2 serve` policy server)"),
    "model": ("tiny", "UIO2 config name (random init) or checkpoint path (e.g. a `uio2 train` run)"),
    "tokenizer": ("", "SentencePiece model of the checkpoint ('' = the bundled tiny vocabulary)"),
    "seed": (0, "policy seed"),
    "family": ("pointnav", "pointnav (discrete navigation -> cmd_vel) | vima (pick and place poses)"),
    # topics
    "image_topics": (["/camera/image_raw"], "camera topics, one per view"),
    "image_views": (["rgb"], "view name of each camera topic (pointnav: rgb; vima: front, top)"),
    "compressed": (False, "cameras publish sensor_msgs/CompressedImage instead of Image"),
    "image_height": (0, "resize frames to this height before the policy (0 = keep)"),
    "image_width": (0, "resize frames to this width before the policy (0 = keep)"),
    "instruction_topic": ("~/instruction", "std_msgs/String: the task prompt; a new one starts an episode"),
    "goal_topic": ("/goal_pose", "geometry_msgs/PoseStamped navigation goal, in the odometry frame"),
    "odom_topic": ("/odom", "nav_msgs/Odometry of the robot"),
    "audio_topic": ("", "std_msgs/Float32MultiArray mono audio chunks ('' = no audio)"),
    "audio_samples": (0, "audio window fed to the policy, in samples (0 = no audio)"),
    "enable_topic": ("~/enable", "std_msgs/Bool: true starts (a new episode), false stops"),
    "cmd_vel_topic": ("/cmd_vel", "velocity commands"),
    "stamped": (False, "publish TwistStamped (Jazzy's Nav2 and diff_drive_controller expect it)"),
    "base_frame": ("base_link", "frame_id of TwistStamped commands"),
    "pick_topic": ("~/pick_pose", "geometry_msgs/PoseStamped pick pose (vima)"),
    "place_topic": ("~/place_pose", "geometry_msgs/PoseStamped place pose (vima)"),
    "workspace_frame": ("uio2_workspace", "frame_id of pick/place poses; give it a static transform"),
    "pick_height": (0.0, "z of pick poses in the workspace frame (m)"),
    "place_height": (0.0, "z of place poses in the workspace frame (m)"),
    "workspace_low": (list(VIMA_WORKSPACE_LOW), "pick/place x, y lower bounds (m); poses are clamped"),
    "workspace_high": (list(VIMA_WORKSPACE_HIGH), "pick/place x, y upper bounds (m)"),
    "decision_topic": ("~/decision", "std_msgs/String JSON record of each decision (for bags)"),
    # rates
    "control_rate_hz": (20.0, "command publishing rate"),
    "policy_period_s": (0.5, "at most one policy decision per period"),
    "max_episode_steps": (500, "decisions per episode before the node stops on its own"),
    # safety
    "start_enabled": (False, "move without an explicit enable message"),
    "max_image_age_s": (0.5, "zero command when the newest camera frame arrived longer ago than this (s)"),
    "max_stamp_age_s": (0.5, "frames stamped further than this from the node clock (ROS time; /clock with "
                        "use_sim_time) are not used (s; 0 = no check)"),
    "max_odom_age_s": (0.5, "zero command when navigating with odometry older than this (s)"),
    "nav_workspace_m": (1000.0, "goals and odometry with |x| or |y| beyond this (m) are rejected"),
    "max_instruction_chars": (2000, "longer instructions are rejected (the old one stays)"),
    "max_instruction_tokens": (256, "longer instructions (tokens of the policy's tokenizer, else words) "
                               "are rejected"),
    "max_policy_latency_s": (2.0, "zero command (and drop the result) when a decision takes longer"),
    "max_linear": (0.3, "|linear.x| limit (m/s)"),
    "max_angular": (0.8, "|angular.z| limit (rad/s)"),
    "max_linear_accel": (0.5, "linear acceleration limit (m/s^2)"),
    "max_angular_accel": (1.5, "angular acceleration limit (rad/s^2)"),
    # discrete actions as motion
    "forward_step_m": (0.25, "distance of one MOVE_FORWARD (Habitat: 0.25 m)"),
    "turn_angle_deg": (10.0, "angle of one TURN_LEFT / TURN_RIGHT (Habitat PointNav: 10 degrees)"),
    "linear_speed": (0.2, "cruise speed of a forward step (m/s)"),
    "angular_speed": (0.5, "cruise speed of a turn (rad/s)"),
    # recording
    "record_bag": ("", "record inputs, commands and decisions to this new rosbag2 directory ('' = off)"),
    "bag_version": (9, "rosbag2 metadata version: 9 (Jazzy+) or 8 (readable by Humble)"),
    "bag_storage": ("mcap", "mcap | sqlite3"),
}


def check_values(values: dict[str, Any]) -> None:
    """Names and types against the table (ROS checks types too; this names the culprit early)."""
    for name, value in values.items():
        if name not in PARAMETERS:
            raise ValueError(f"unknown parameter {name!r}")
        default = PARAMETERS[name][0]
        if (
            isinstance(default, bool) != isinstance(value, bool)
            or (isinstance(default, float) and not isinstance(value, (int, float)))
            or (isinstance(default, (str, list)) and not isinstance(value, type(default)))
        ):
            raise ValueError(f"parameter {name!r} must be like {default!r}, got {value!r}")


def runner_config(values: dict[str, Any]) -> RunnerConfig:
    """The runner configuration for a full set of parameter values (defaults filled in)."""
    v = {name: default for name, (default, _) in PARAMETERS.items()}
    check_values(values)
    v.update(values)
    topics, views = list(v["image_topics"]), list(v["image_views"])
    if len(topics) != len(views):
        raise ValueError(f"image_topics ({len(topics)}) and image_views ({len(views)}) must pair up")
    limits = Limits(float(v["max_linear"]), float(v["max_angular"]), float(v["max_linear_accel"]),
                    float(v["max_angular_accel"]))  # fmt: skip
    motion = DiscreteMotion(
        forward_step_m=float(v["forward_step_m"]), turn_angle_deg=float(v["turn_angle_deg"]),
        linear_speed=float(v["linear_speed"]), angular_speed=float(v["angular_speed"]),
        limits=limits,
    )  # fmt: skip
    if float(v["control_rate_hz"]) <= 0:
        raise ValueError(f"control_rate_hz must be positive, got {v['control_rate_hz']}")
    low, high = [float(x) for x in v["workspace_low"]], [float(x) for x in v["workspace_high"]]
    if len(low) != 2 or len(high) != 2 or not all(a < b for a, b in zip(low, high, strict=True)):
        raise ValueError(f"workspace_low {low} must be below workspace_high {high} in x and y")
    return RunnerConfig(
        family=str(v["family"]), views=tuple(views), image_topics=dict(zip(views, topics, strict=True)),
        image_height=int(v["image_height"]), image_width=int(v["image_width"]),
        policy_period_s=float(v["policy_period_s"]), max_image_age_s=float(v["max_image_age_s"]),
        max_policy_latency_s=float(v["max_policy_latency_s"]), max_episode_steps=int(v["max_episode_steps"]),
        max_stamp_age_s=float(v["max_stamp_age_s"]), max_odom_age_s=float(v["max_odom_age_s"]),
        nav_workspace_m=float(v["nav_workspace_m"]), max_instruction_chars=int(v["max_instruction_chars"]),
        max_instruction_tokens=int(v["max_instruction_tokens"]),
        audio_samples=int(v["audio_samples"]), motion=motion, limits=limits,
        control_period_s=1.0 / float(v["control_rate_hz"]),
        workspace_low=(low[0], low[1]), workspace_high=(high[0], high[1]),
    )  # fmt: skip


def make_policy(values: dict[str, Any]) -> Any:
    """The policy the parameters name (imports the model stack only when it is needed)."""
    v = {name: default for name, (default, _) in PARAMETERS.items()}
    v.update(values)
    name = str(v["policy"])
    if name.startswith(("remote://", "ws://", "wss://")):
        from agent.server.client import RemotePolicy

        return RemotePolicy(name)
    from policies.registry import make_policy as make_named

    kwargs: dict[str, Any] = {}
    if name == "uio2" and v["tokenizer"]:
        kwargs["tokenizer"] = str(v["tokenizer"])
    return make_named(name, model=str(v["model"]), seed=int(v["seed"]), **kwargs)

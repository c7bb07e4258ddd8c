"""Gymnasium environments (tabletop manipulation, PointNav) and adapters. Knows nothing of the model.

`register_envs()` registers every id with Gymnasium (idempotent): `uio2/PointNav-v0`,
`uio2/PointNavAudio-v0`, `uio2/tabletop-<task>-v0`, and the adapters' `uio2/vima-<task>-v0`.
"""


def register_envs() -> None:
    from envs.pointnav import register_envs as register_pointnav
    from envs.tabletop import register_envs as register_tabletop
    from envs.vima_bench import register_vima_envs

    register_pointnav()
    register_tabletop()
    register_vima_envs()

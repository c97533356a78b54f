"""The command's output folder: a run never mixes its files with an earlier run's, and a failed or
interrupted run leaves the earlier results as they were.

A run writes into a hidden staging folder next to ``--out`` (``.NAME.neutronq-XXXX``, on the
same file system) and moves it in place when everything is written. ``--out`` may name a new
folder, an empty one, or, with ``--force``, a folder an earlier run wrote (it holds the run
marker, or only the files a run writes): the new run replaces it as a whole, at the end. A folder
holding anything else (the user's own files) is never replaced, with or without ``--force``.
Without ``--force`` an earlier run is refused, as a build or training tool refuses to overwrite
results (Hugging Face's Trainer, cookiecutter, ``git clone``): a stable path for scripts, and
nothing lost by accident; numbered folders (``out2``, ``out3``) would break the path a script or
the report links name.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from neutronq import __version__
from neutronq.app.inputs import InputError

__all__ = ["RUN_MARKER", "OutputFolder", "is_run_folder"]

RUN_MARKER = ".neutronq-run"  # written into every run's folder: what wrote it, when
_RUN_FILES = {"report.json", "report.html", "plots", "tflite", RUN_MARKER}


def is_run_folder(folder: Path) -> bool:
    """A folder an earlier run wrote: it holds the run marker, or only the files a run writes
    (runs from before the marker existed)."""
    entries = list(folder.iterdir())
    if (folder / RUN_MARKER).is_file():
        return True
    return bool(entries) and all(e.name in _RUN_FILES or (e.is_file() and e.suffix == ".pte") for e in entries)


def _describe(folder: Path) -> str:
    names = sorted(e.name for e in folder.iterdir() if e.name != RUN_MARKER)
    marker = folder / RUN_MARKER
    when = ""
    if marker.is_file():
        try:
            when = f" of {json.loads(marker.read_text())['created']}"
        except (ValueError, KeyError, OSError):
            pass
    return f"an earlier run{when} ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"


class OutputFolder:
    """``--out`` checked before any work, a staging folder to write into, and the move in place.

    ``staging`` is where the run writes; ``target`` is where its files will be (the paths the
    report names). ``commit()`` moves the staging folder in place; ``discard()`` removes it."""

    def __init__(self, target: Path, force: bool = False, inputs: Sequence[tuple[str, Optional[str]]] = ()):
        if str(target).strip() == "":
            raise InputError("--out is empty", "name the folder for the results, e.g. --out out/net")
        self.target = Path(target)
        self.force = force
        self.replaces = False
        resolved = self.target.resolve()
        if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents or resolved == Path.home():
            raise InputError(f"--out {str(target)!r} is the working folder or one above it, which holds more than "
                             "a run's results", "name a folder of its own for the results, e.g. --out out/net")
        if self.target.exists() and not self.target.is_dir():
            raise InputError(f"--out {str(target)!r} is a file, not a folder",
                             "name a folder for the results (it is created), e.g. --out out/net")
        if self.target.is_dir() and any(self.target.iterdir()):
            if not is_run_folder(self.target):
                example = min(e.name for e in self.target.iterdir())
                raise InputError(f"--out {str(target)!r} holds files neutronq did not write (e.g. {example!r}); a "
                                 "run replaces its whole folder", "name a new or empty folder for the results")
            if not force:
                raise InputError(f"--out {str(target)!r} holds {_describe(self.target)}",
                                 "pass --force to replace it when this run succeeds, or name another --out")
            self.replaces = True
        for what, path in inputs:  # the user's inputs must not live where a run replaces everything
            if path and Path(path).exists() and _under(Path(path), resolved):
                raise InputError(f"the {what} {path!r} is inside --out {str(target)!r}, which a run replaces "
                                 "as a whole", "move it out of that folder, or name another --out")
        parent = self.target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.neutronq-", dir=parent))
            self.staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700: the folder a user would get
        except OSError as e:
            raise InputError(f"cannot write the results next to --out {str(target)!r} ({e.strerror or e})",
                             "name a folder you can write to, e.g. --out out/net") from e

    def commit(self, model: str) -> None:
        """Move the finished run in place (replacing an earlier run as a whole)."""
        (self.staging / RUN_MARKER).write_text(json.dumps({
            "neutronq_version": __version__, "model": model,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}))
        old = None
        if self.target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.neutronq-old-", dir=self.target.parent))
            os.rmdir(old)
            os.rename(self.target, old)
        try:
            os.rename(self.staging, self.target)
        except OSError:
            if old is not None:  # put the earlier run back
                os.rename(old, self.target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _under(path: Path, folder: Path) -> bool:
    resolved = path.resolve()
    return resolved == folder or folder in resolved.parents

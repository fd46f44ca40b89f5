"""The files a ``reinmax-compare`` run writes: each written atomically (a temporary file in the
same folder, then renamed over the target), so that a full disk or an interrupt never leaves a
truncated file; the output folder is checked before training, and a reused folder is cleared of
an older run's files so that the two runs' results are never mixed."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from reinmax_examples.methods import ConfigurationError

MANIFEST = "results.json"  # lists the files of its run under "files"
KNOWN_FILES = (
    "results.json",
    "elbo.png",
    "metric.png",
    "gradients.png",
    "top_words.txt",
    "posterior_summary.csv",
    "forest.png",
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)`` and rename the result onto ``path``; on any error the
    target is left as it was and the temporary file is removed."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix
    )
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from others
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    return write_atomically(path, lambda temporary: temporary.write_text(text))


def write_json(path: Path, data) -> Path:
    """``data`` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=1))


def save_figure(figure, path: Path, **options) -> Path:
    """``figure.savefig(path)``, atomically (the format from ``path``'s suffix)."""
    fmt = Path(path).suffix.lstrip(".")
    return write_atomically(
        path, lambda temporary: figure.savefig(temporary, format=fmt, **options)
    )


def load_results(out: Path) -> dict:
    """The ``results.json`` of the run in ``out``; a :class:`ConfigurationError` where there is
    none to read."""
    manifest = Path(out) / MANIFEST
    try:
        results = json.loads(manifest.read_text())
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"--add: no run to add to in {out} ({error})") from error
    if not isinstance(results, dict) or not isinstance(results.get("methods"), dict):
        raise ConfigurationError(f"--add: {manifest} is not a reinmax-compare results file")
    return results


def prepare_output(out: Path, keep: bool = False) -> None:
    """Create ``out``, check that files can be written there, and remove the files of an older
    run (those its ``results.json`` lists, and the command's known file names) unless ``keep``
    (``--add``: the run goes on there)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / ".write-check", "")
        (out / ".write-check").unlink()
    except OSError as error:
        raise OSError(f"--out {out}: cannot write there ({error.strerror or error}).") from error
    if keep:
        return
    stale = set(KNOWN_FILES)
    manifest = out / MANIFEST
    if manifest.exists():
        # an unreadable manifest: its known names are removed all the same
        with contextlib.suppress(ValueError, AttributeError):
            stale.update(json.loads(manifest.read_text()).get("files", []))
    for name in stale:
        target = out / name
        if target.parent == out and target.is_file():
            target.unlink()

"""Finds recipe sources: files, folders of them, and the installed torchtune's recipes."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

UNKNOWN_VERSION = "unknown"


@dataclass(frozen=True)
class SourceFile:
    path: Path
    output_name: PurePosixPath  # where it goes under the output folder
    label: str  # how the generated header names it: stable across machines
    torchtune_version: str
    display: str = ""  # how messages name it: the path as given, or the label
    from_folder: bool = False  # found in a folder given whole: the output folder is the folder's

    def __str__(self) -> str:
        return self.display or str(self.path)


@dataclass(frozen=True)
class MissingSource:
    path: Path
    reason: str


def installed_recipes_dir() -> Path:
    """The `recipes/` folder the installed torchtune wheel ships beside its package."""
    spec = importlib.util.find_spec("torchtune")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("torchtune is not installed")
    recipes = Path(spec.origin).parent.parent / "recipes"
    if not recipes.is_dir():
        raise FileNotFoundError(f"the installed torchtune has no recipes folder ({recipes})")
    return recipes


def installed_version() -> str:
    try:
        return importlib.metadata.version("torchtune")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def discover(paths: Iterable[Path], installed: bool, version: Optional[str] = None) -> List[object]:
    """SourceFile for each Python file named or under a folder named; MissingSource for
    paths that do not exist."""
    found: List[object] = []
    if installed:
        version = version or installed_version()
        found += [
            replace(source, display=f"torchtune {version}: {source.label}")
            for source in _folder(installed_recipes_dir(), version)
        ]
    for path in paths:
        if path.suffix == ".whl":
            try:
                recipes, wheel_version = wheel_recipes(path)
            except ValueError as error:
                found.append(MissingSource(path, str(error)))
                continue
            found += [
                replace(source, display=f"{path.name}: {source.label}")
                for source in _folder(recipes, version or wheel_version)
            ]
        elif path.is_dir():
            found += _folder(path, version or detect_version(path))
        elif path.exists() or path.is_symlink():
            found.append(
                SourceFile(
                    path,
                    PurePosixPath(path.name),
                    f"{path.parent.name}/{path.name}" if path.parent.name else path.name,
                    version or detect_version(path),
                )
            )
        else:
            found.append(MissingSource(path, "no such file or folder"))
    return found


def _folder(root: Path, version: str) -> List[SourceFile]:
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    label_root = root.resolve().name
    return [
        SourceFile(
            path,
            PurePosixPath(path.relative_to(root).as_posix()),
            f"{label_root}/{path.relative_to(root).as_posix()}",
            version,
            from_folder=True,
        )
        for path in files
    ]


_VERSION_LINE = re.compile(r"^Version:\s*(\S+)", re.MULTILINE)


def detect_version(path: Path) -> str:
    """The torchtune version a recipes folder came with: from the wheel's dist-info
    beside it, or a source checkout's version.txt, else 'unknown'."""
    for folder in [path.resolve(), *path.resolve().parents][:4]:
        for info in sorted(folder.glob("torchtune-*.dist-info/METADATA")):
            match = _VERSION_LINE.search(info.read_text(errors="replace"))
            if match:
                return match.group(1)
        version_txt = folder / "version.txt"
        if version_txt.is_file() and (folder / "torchtune").is_dir():
            return version_txt.read_text().strip() or UNKNOWN_VERSION
    return UNKNOWN_VERSION


def recipe_name(recipe: str) -> str:
    """A recipe's name as users write it: its path under the recipes folder, without .py."""
    return recipe[:-3] if recipe.endswith(".py") else recipe


# How messages name the installed torchtune's recipes folder.
INSTALLED_NAME = "the installed torchtune"


def installed_folders() -> Dict[str, Path]:
    """The installed torchtune's recipes folder by how messages name it; none where
    torchtune (or its recipes folder) is not installed."""
    try:
        return {INSTALLED_NAME: installed_recipes_dir()}
    except FileNotFoundError:
        return {}


def find_recipe(recipe: str, folders: Mapping[str, Path]) -> Path:
    """The one resolver of a recipe as users give it: a file or folder by path, else
    `<folder>/<name>.py` in the first of `folders` that has it (`lora_finetune_single_device`,
    `dev/grpo_full_finetune_distributed`). `folders` map how messages name each folder to
    it. FileNotFoundError says where it looked."""
    path = Path(recipe)
    if path.exists():
        return path
    for folder in folders.values():
        candidate = folder / f"{recipe_name(recipe)}.py"
        if candidate.is_file():
            return candidate
    if not folders:
        raise FileNotFoundError(f"{recipe}: no such recipe file (and no installed torchtune to find it by name)")
    raise FileNotFoundError(f"{recipe}: no such recipe file, nor a recipe of that name in {' or '.join(folders)}")


def installed_source(path: Path) -> Optional[SourceFile]:
    """The installed torchtune's recipe at `path`, labelled as `--installed` labels it;
    None when `path` is not one."""
    try:
        installed = installed_recipes_dir().resolve()
    except FileNotFoundError:
        return None
    if not path.is_file() or installed not in path.resolve().parents:
        return None
    return next(s for s in discover([], installed=True) if s.path.resolve() == path.resolve())


def sources_at(path: Path) -> List[object]:
    """The sources at `path`: the installed torchtune's recipe when it is one; else the
    file, or the folder's files."""
    source = installed_source(path)
    return [source] if source is not None else discover([path], installed=False)


def recipe_set(spec: str) -> List[SourceFile]:
    """The recipes of one side of an upgrade: `installed`, a folder, or a torchtune
    wheel. ValueError says why not."""
    if spec == "installed":
        found = discover([], installed=True)
    elif spec.endswith(".whl") or Path(spec).is_dir():
        found = discover([Path(spec)], installed=False)
        found = discover([Path(spec)], installed=False)
    else:
        raise ValueError(f"{spec}: not 'installed', a folder of recipes, nor a torchtune .whl file")
    for missing in (source for source in found if isinstance(source, MissingSource)):
        raise ValueError(f"{spec}: {missing.reason}")
    return found


def read_source(path: Path) -> str:
    """The text of a source, or ValueError saying why it is not one."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise ValueError("is a folder") from None
    except OSError as error:
        raise ValueError(f"cannot read: {error.strerror or error}") from error
    if b"\0" in data:
        raise ValueError("binary file, not Python source")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text (byte {error.start}: {data[error.start]:#04x})") from error


def wheel_recipes(wheel: Path) -> Tuple[Path, str]:
    """The recipes folder of a torchtune wheel and the wheel's version. The recipes are
    unpacked once into porter's cache folder, under the hash of the wheel's bytes, so
    nothing has to outlive a conversion. ValueError says why not."""
    import hashlib
    import io

    from porter.cache import default_folder

    try:
        data = wheel.read_bytes()
        archive = zipfile.ZipFile(io.BytesIO(data))
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except IsADirectoryError:
        raise ValueError("is a folder, not a wheel") from None
    except (OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"cannot read the wheel: {getattr(error, 'strerror', None) or error}") from error
    with archive:
        names = archive.namelist()
        metadata = [name for name in names if name.endswith(".dist-info/METADATA")]
        match = _VERSION_LINE.search(archive.read(metadata[0]).decode("utf-8", "replace")) if metadata else None
        recipes = [name for name in names if name.startswith("recipes/") and name.endswith(".py")]
        if not recipes:
            raise ValueError("the wheel has no recipes folder")
        folder = default_folder() / "wheels" / f"{wheel.stem}-{hashlib.sha256(data).hexdigest()[:16]}"
        if not folder.is_dir():
            try:
                _unpack(archive, recipes, folder)
            except OSError as error:
                raise ValueError(
                    f"cannot unpack its recipes into {folder.parent}: {getattr(error, 'strerror', None) or error}"
                ) from error
    return folder / "recipes", match.group(1) if match else UNKNOWN_VERSION


def _unpack(archive: zipfile.ZipFile, names: List[str], folder: Path) -> None:
    """`names` of `archive` into `folder`, whole or not at all: unpacked beside it and
    renamed, so a folder there is always complete."""
    import shutil

    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
    try:
        for name in names:
            archive.extract(name, partial)
        partial.rename(folder)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not folder.is_dir():  # else another process unpacked it first
            raise

"""llama.cpp's own HF → GGUF converter, taken from the llama-cpp-python source of the installed version.

The converter (`convert_hf_to_gguf.py`, its `conversion/` package and its vendored `gguf-py/`) is not
in the llama-cpp-python wheel, only in its source archive. Taking it from the same version as the
runtime keeps converter and runtime in agreement. `make install` extracts it next to the virtual
environment; elsewhere `python -m llmcourse.quantize.llamacpp.source` fetches it once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from llmcourse.core.errors import UserError

SOURCE_ENV = "LLMCOURSE_LLAMA_CPP_SRC"
PACKAGE = "llama-cpp-python"
MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version (UserError if it is not installed)."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise UserError("GGUF needs llama-cpp-python, which is not installed", hint="pip install 'llmcourse[gguf]' (see the README for build flags)") from exc


def candidate_dirs(version: str) -> list[Path]:
    """Where the converter of `version` is looked for, in order."""
    from llmcourse.core.cache import llmcourse_home

    found = [Path(os.environ[SOURCE_ENV])] if os.environ.get(SOURCE_ENV) else []
    return found + [Path(sys.prefix) / "share" / "llmcourse" / f"llama.cpp-{version}", llmcourse_home() / f"llama.cpp-{version}"]


def converter_dir() -> Path:
    """The folder holding `convert_hf_to_gguf.py` for the installed llama-cpp-python."""
    version = llama_cpp_version()
    for folder in candidate_dirs(version):
        if (folder / "convert_hf_to_gguf.py").is_file() and (folder / "gguf-py").is_dir():
            return folder
    raise UserError(
        f"llama.cpp's converter for llama-cpp-python {version} is not on this machine",
        hint=f"run `python -m llmcourse.quantize.llamacpp.source` once (downloads the {PACKAGE} source), "
        f"or set {SOURCE_ENV} to a llama.cpp checkout of the same version",
    )


def extract(archive: Path, dest: Path) -> Path:
    """Extract the converter files of a llama-cpp-python source archive into `dest` (atomically)."""
    prefix = None
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 1)
            inner = parts[1] if len(parts) > 1 else ""
            if not inner.startswith("vendor/llama.cpp/"):
                continue
            relative = inner.removeprefix("vendor/llama.cpp/")
            if not any(relative == m or (m.endswith("/") and relative.startswith(m)) for m in MEMBERS):
                continue
            if not (member.isfile() or member.isdir()):
                continue
            prefix = prefix or parts[0]
            member.name = relative
            tar.extract(member, partial, filter="data")
    if prefix is None or not (partial / "convert_hf_to_gguf.py").is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"{archive}: no vendor/llama.cpp/convert_hf_to_gguf.py inside; is this a {PACKAGE} source archive?")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(dest)
    return dest


def fetch(dest: Path | None = None, archive: Path | None = None, version: str | None = None) -> Path:
    """Put the converter of the installed (or given) version in place, downloading the source if needed."""
    version = version or llama_cpp_version()
    in_venv = sys.prefix != sys.base_prefix  # a virtual environment keeps its own copy, beside its packages
    dest = dest or candidate_dirs(version)[-2 if in_venv else -1]
    if archive is not None:
        return extract(archive, dest)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", f"{PACKAGE}=={version}", "-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise UserError(f"could not download the {PACKAGE} {version} source: {(result.stderr.strip().splitlines() or ['?'])[-1]}",
                            hint="download it on a machine with network access and pass it: python -m llmcourse.quantize.llamacpp.source FILE.tar.gz")
        return extract(archives[0], dest)


def main(argv: list[str]) -> int:
    """`python -m llmcourse.quantize.llamacpp.source [ARCHIVE] [--dest DIR] [--version V]`."""
    archive = Path(argv[0]) if argv and not argv[0].startswith("--") else None
    dest = Path(argv[argv.index("--dest") + 1]) if "--dest" in argv else None
    version = argv[argv.index("--version") + 1] if "--version" in argv else None
    try:
        where = fetch(dest, archive, version)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"llama.cpp converter ready in {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

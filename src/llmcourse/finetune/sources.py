"""Dataset sources shared by the training commands: local files and folders, hub ids, `lab://`.

`check_source` runs before anything heavy (it only looks at the file system); `load_rows` does the
real `datasets` call and `texts_of` extracts a text column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmcourse.core.errors import UserError
from llmcourse.lab import corpus as lab_corpus
from llmcourse.lab import skills as lab_skills
from llmcourse.core.modelio import looks_like_local_path
from llmcourse.recipes.common import DatasetSource

LAB_PREFIX = "lab://"
LOADERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text", ".md": "text"}
LAB_CORPUS_DEFAULT_DOCS = 20000


def is_lab(path: str) -> bool:
    """True for `lab://...` sources."""
    return path.startswith(LAB_PREFIX)


def check_source(source: DatasetSource, where: str) -> None:
    """Fail early, with the recipe field in the message, if a source cannot be read."""
    if is_lab(source.path):
        name = source.path[len(LAB_PREFIX) :]
        if name != "corpus":
            try:
                list(lab_skills.iter_skill_names(name))
            except UserError as exc:
                raise UserError(f"{where}.path: {exc.message}", hint=exc.hint) from exc
        if source.split not in lab_skills.SPLITS:
            raise UserError(f"{where}.split: lab data has splits {', '.join(lab_skills.SPLITS)}, got '{source.split}'")
        return
    if not looks_like_local_path(source.path):
        return
    path = Path(source.path).expanduser()
    if not path.exists():
        raise UserError(f"{where}.path: dataset file not found: {source.path}", hint="check the path (relative paths start from the current folder)")
    files = _data_files(path)
    if not files:
        raise UserError(f"{where}.path: no data files in {source.path}", hint=f"supported: {', '.join(sorted(LOADERS))}")
    if all(f.stat().st_size == 0 for f in files):
        raise UserError(f"{where}.path: dataset is empty: {source.path}")


def _data_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in LOADERS)


def load_rows(source: DatasetSource, where: str, lab_format: str = "text", lab_count: int = 2000) -> Any:
    """Load one source as a `datasets.Dataset` (lab sources are generated in `lab_format`)."""
    from datasets import Dataset, load_dataset

    check_source(source, where)
    if is_lab(source.path):
        rows = lab_rows(source, lab_format, lab_count)
        dataset = Dataset.from_list(rows)
    elif looks_like_local_path(source.path):
        files = [str(f) for f in _data_files(Path(source.path).expanduser())]
        loader = LOADERS[Path(files[0]).suffix]
        kwargs: dict[str, Any] = {"sample_by": "paragraph"} if loader == "text" else {}
        try:
            dataset = load_dataset(loader, data_files=files, split="train", **kwargs)
        except Exception as exc:  # datasets raises many types for a malformed file
            raise UserError(f"{where}.path: cannot read {source.path}: {str(exc).splitlines()[0]}") from exc
    else:
        try:
            dataset = load_dataset(source.path, source.name, split=source.split, data_files=source.data_files)
        except Exception as exc:
            raise UserError(
                f"{where}.path: cannot load hub dataset '{source.path}': {str(exc).splitlines()[0]}",
                hint="hub datasets need network access (HF_DATASETS_OFFLINE unset) or a local copy",
            ) from exc
    if source.num_samples is not None and len(dataset) > source.num_samples:
        dataset = dataset.select(range(source.num_samples))
    if len(dataset) == 0:
        raise UserError(f"{where}.path: dataset is empty: {source.path}")
    return dataset


def lab_rows(source: DatasetSource, lab_format: str, count: int) -> list[dict]:
    """Rows of a `lab://` source: the corpus as text, or skills in the requested format."""
    name = source.path[len(LAB_PREFIX) :]
    if name == "corpus":
        docs = lab_corpus.documents(source.split, source.num_samples or LAB_CORPUS_DEFAULT_DOCS)
        return [{"text": doc} for doc in docs]
    names = list(lab_skills.iter_skill_names(name))
    per_skill = -(-(source.num_samples or count) // len(names))
    formatter = lab_skills.FORMATS[lab_format]
    return [formatter(ex) for ex in lab_skills.mixed(names, source.split, per_skill)]


def texts_of(dataset: Any, source: DatasetSource, where: str) -> list[str]:
    """The non-empty strings of the source's text column."""
    if source.field not in dataset.column_names:
        raise UserError(
            f"{where}.field: dataset {source.path} has no column '{source.field}'",
            hint=f"its columns are: {', '.join(dataset.column_names)}",
        )
    texts = [t for t in dataset[source.field] if isinstance(t, str) and t.strip()]
    if not texts:
        raise UserError(f"{where}.path: dataset is empty (no text in column '{source.field}'): {source.path}")
    return texts

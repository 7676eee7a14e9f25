"""Uploading a finished output folder to the Hugging Face Hub (the network boundary tests replace)."""

from __future__ import annotations

from pathlib import Path


def push_folder(folder: Path, repo: str, private: bool, message: str, space_sdk: str | None = None) -> str:
    """Create `repo` if needed (a model repo, or a Space with `space_sdk`) and upload `folder`; its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    kind = {"repo_type": "space", "space_sdk": space_sdk} if space_sdk else {}
    api.create_repo(repo, private=private, exist_ok=True, **kind)
    api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message=message, **({"repo_type": "space"} if space_sdk else {}))
    return f"https://huggingface.co/{'spaces/' if space_sdk else ''}{repo}"

"""No network, HF_HUB_OFFLINE unset: hub ids fail at once with the reason, or come from the local cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli

# A hub endpoint nothing listens on: connections are refused at once, as on a machine with no network.
NO_NETWORK = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}


def test_sft_with_a_hub_id_and_no_network_fails_at_once(tmp_path: Path) -> None:
    result = run_cli("sft", "lab/sft", "base_model=someone/some-model", "--preview",
                     env={**NO_NETWORK, "HF_HUB_CACHE": str(tmp_path / "empty-cache")})
    assert result.returncode == 2, result.stderr
    assert "the Hugging Face Hub is not reachable" in result.stderr and "not in the local cache" in result.stderr
    assert "Retrying" not in result.stderr and "Traceback" not in result.stderr
    assert "unset HF_HUB_OFFLINE" not in result.stderr, "it was not set"


def test_merge_with_hub_ids_and_no_network_fails_at_once(tmp_path: Path) -> None:
    config = tmp_path / "merge.yaml"
    config.write_text("merge_method: slerp\nbase_model: someone/model-a\ndtype: float32\nslices:\n  - sources:\n"
                      "      - model: someone/model-a\n        layer_range: [0, 2]\n      - model: someone/model-b\n"
                      "        layer_range: [0, 2]\nparameters:\n  t: 0.5\n", encoding="utf-8")
    result = run_cli("merge", str(config), "-o", str(tmp_path / "out"),
                     env={**NO_NETWORK, "HF_HUB_CACHE": str(tmp_path / "empty-cache")})
    assert result.returncode == 2 and "the Hugging Face Hub is not reachable" in result.stderr, result.stderr
    assert "Retrying" not in result.stderr and not (tmp_path / "out").exists()


def test_a_cached_hub_model_is_used_offline_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmcourse.core import modelio

    snapshot = tmp_path / "hub" / "models--someone--cached" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}", encoding="utf-8")
    for key, value in {**NO_NETWORK, "HF_HUB_CACHE": str(tmp_path / "hub")}.items():
        monkeypatch.setenv(key, value)
    modelio.hub_reachable.cache_clear()
    try:
        assert modelio.check_model_source("someone/cached") == "someone/cached"
        import os

        assert os.environ["HF_HUB_OFFLINE"] == "1", "the hub client will read the cache only"
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        with pytest.raises(modelio.UserError, match="not in the local cache"):
            modelio.check_model_source("someone/not-cached")
    finally:
        modelio.hub_reachable.cache_clear()

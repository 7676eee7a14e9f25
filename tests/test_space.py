"""`llmcourse space`: the Space's files and front matter, the push to the hub (network boundary
patched), bad inputs, and the app launched headless answering through gradio_client exactly like
greedy decoding with transformers."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO
from llmcourse.cli import app
from llmcourse.lab import skills


def front_matter(folder: Path) -> dict:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def space(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["space", *args])
    return result.exit_code, result.output


def test_space_files_front_matter_and_runtime(lab_sft: str, tmp_path: Path) -> None:
    model = lab_sft
    code, output = space(model, "-o", str(tmp_path / "chat"), "--emoji", "🦙", "--color-from", "green", "--system", "Be brief.")
    assert code == 0, output
    meta = front_matter(tmp_path / "chat")
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["emoji"] == "🦙"
    assert meta["colorFrom"] == "green" and meta["colorTo"] == "blue" and meta["sdk_version"].count(".") == 2
    assert meta["license"] == "apache-2.0", "taken from the model card"
    assert "models" not in meta, "a local folder is not a hub model"
    source = (tmp_path / "chat" / "app.py").read_text(encoding="utf-8")
    compile(source, "app.py", "exec")
    assert f"MODEL = {str(Path(model).resolve())!r}" in source and "SYSTEM_PROMPT = 'Be brief.'" in source
    assert (tmp_path / "chat" / "requirements.txt").read_text().split() == ["torch", "transformers>=4.56", "accelerate"]

    gguf = tmp_path / "lab.Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF")
    code, output = space(str(gguf), "-o", str(tmp_path / "gguf"), "--model-id", "someone/lab-GGUF")
    assert code == 0, output
    source = (tmp_path / "gguf" / "app.py").read_text(encoding="utf-8")
    assert "KIND = 'gguf'" in source and "GGUF_FILE = 'lab.Q4_K_M.gguf'" in source and "MODEL = 'someone/lab-GGUF'" in source
    assert front_matter(tmp_path / "gguf")["models"] == ["someone/lab-GGUF"]
    assert "llama-cpp-python>=0.3" in (tmp_path / "gguf" / "requirements.txt").read_text()


def test_space_push_and_bad_inputs(lab_sft: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    model = lab_sft
    code, output = space(model, "-o", str(tmp_path / "a"), "--push", "someone/chat")
    assert code == 2 and "--model-id" in output and not (tmp_path / "a").exists()
    code, output = space(model, "-o", str(tmp_path / "a"), "--color-from", "teal")
    assert code == 2 and "indigo" in output and "Traceback" not in output
    code, output = space(str(tmp_path / "missing"), "-o", str(tmp_path / "a"))
    assert code == 2 and "not found" in output

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo, **kw: calls.append(("create", {"repo": repo, **kw})))

    def upload(self: object, **kw: object) -> None:
        folder = Path(str(kw["folder_path"]))
        assert {p.name for p in folder.iterdir()} >= {"app.py", "README.md", "requirements.txt"}
        calls.append(("upload", kw))

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload)
    code, output = space(model, "-o", str(tmp_path / "b"), "--model-id", "someone/lab-sft", "--push", "someone/chat", "--private")
    assert code == 0, output
    assert calls[0] == ("create", {"repo": "someone/chat", "repo_type": "space", "space_sdk": "gradio", "private": True, "exist_ok": True})
    assert calls[1][1]["repo_type"] == "space" and calls[1][1]["repo_id"] == "someone/chat"
    assert "huggingface.co/spaces/someone/chat" in output
    assert front_matter(tmp_path / "b")["models"] == ["someone/lab-sft"]
    code, output = space(model, "-o", str(tmp_path / "b"))
    assert code == 2 and "--overwrite" in output


@pytest.mark.slow
def test_launched_space_answers_through_gradio_client_like_greedy_generate(lab_sft: str, tmp_path: Path) -> None:
    from gradio_client import Client

    from llmcourse.generation.engines import HfEngine
    from llmcourse.generation.strategies import DecodeOptions, get_strategy
    from test_serve import free_port

    model = lab_sft
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "llmcourse", "space", model, "-o", str(tmp_path / "space"), "--launch",
                                "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(480):
            assert process.poll() is None, process.stdout.read() if process.stdout else "the app exited"
            try:
                if urllib.request.urlopen(url, timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.25)
        client = Client(url, verbose=False)
        engine = HfEngine(model)
        for row in skills.mixed(["parity", "larger", "first_letter"], "heldout", 1):
            expected = engine.generate(engine.prompt_ids(row.question), get_strategy("greedy"), DecodeOptions(max_new_tokens=16)).text
            client.reset_session()  # a session carries the chat history; each question starts a new chat
            job = client.submit(row.question, "", 16, 0.0, 0.9, 0, 1.0, api_name="/chat")
            answer = job.result(timeout=120)
            assert answer.strip() == expected.strip(), row.question
            assert len(job.outputs()) >= 1 and job.outputs()[-1] == answer
        # without a reset, the second question is answered with the first exchange in the prompt
        first, second = (row.question for row in skills.mixed(["count", "sentiment"], "heldout", 1))
        client.reset_session()
        reply = client.predict(first, "", 16, 0.0, 0.9, 0, 1.0, api_name="/chat")
        history = [{"role": "user", "content": first}, {"role": "assistant", "content": reply}]
        expected = engine.generate(engine.prompt_ids(second, history=history), get_strategy("greedy"), DecodeOptions(max_new_tokens=16)).text
        assert client.predict(second, "", 16, 0.0, 0.9, 0, 1.0, api_name="/chat").strip() == expected.strip()
    finally:
        process.terminate()
        process.wait(timeout=20)

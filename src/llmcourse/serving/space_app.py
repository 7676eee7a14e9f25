"""A Gradio chat app for one model, runnable on a Hugging Face Space (ZeroGPU-ready) or locally.

`llmcourse space` copies this file as the Space's `app.py` and rewrites the settings block below;
the app itself needs only gradio and the model's runtime (transformers, peft or llama-cpp-python),
not llmcourse. Environment: MODEL overrides the model, GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
choose where it listens (127.0.0.1 unless a Space sets otherwise).
"""

import os
from threading import Thread

import gradio as gr

# --- settings (written by llmcourse space) ---
MODEL = "lab/model"
KIND = "transformers"  # transformers | peft | gguf
GGUF_FILE = ""  # the .gguf file in MODEL's repo, when MODEL is a hub id and KIND is gguf
TITLE = "Chat"
DESCRIPTION = ""
SYSTEM_PROMPT = ""
MAX_NEW_TOKENS = 256
# --- end settings ---

STOP_TOKENS = ("<|im_end|>", "<|eot_id|>", "</s>", "<|endoftext|>", "<end_of_turn>", "<|end|>", "<|END_OF_TURN_TOKEN|>")

try:  # on a ZeroGPU Space, `spaces.GPU` lends a GPU to each call; elsewhere it is not needed
    import spaces

    on_gpu = spaces.GPU
except ImportError:
    def on_gpu(function):
        """No-op outside ZeroGPU."""
        return function


def load():
    """The model and its tokenizer (None for GGUF, which carries its own)."""
    model_id = os.environ.get("MODEL", MODEL)
    if KIND == "gguf":
        from llama_cpp import Llama

        if os.path.isfile(model_id):
            return Llama(model_path=model_id, n_ctx=0, verbose=False), None
        return Llama.from_pretrained(repo_id=model_id, filename=GGUF_FILE, n_ctx=0, verbose=False), None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if KIND == "peft":
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(model_id, dtype="auto").merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype="auto")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), AutoTokenizer.from_pretrained(model_id)


MODEL_OBJECT, TOKENIZER = load()


def text_of(content):
    """Gradio may hand a message's content as a string or as a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "")
    return "".join(text_of(part) for part in content or [])


def conversation(message, history, system_prompt):
    """The messages to send: system prompt, the history, then the new user message."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += [{"role": turn["role"], "content": text_of(turn["content"])} for turn in history or []]
    return messages + [{"role": "user", "content": text_of(message)}]


@on_gpu
def respond(message, history, system_prompt, max_new_tokens, temperature, top_p, top_k, repetition_penalty):
    """Stream the assistant's answer; temperature 0 decodes greedily."""
    messages = conversation(message, history, system_prompt)
    if TOKENIZER is None:
        stream = MODEL_OBJECT.create_chat_completion(
            messages, stream=True, max_tokens=int(max_new_tokens), temperature=float(temperature),
            top_p=float(top_p), top_k=int(top_k), repeat_penalty=float(repetition_penalty))
        answer = ""
        for chunk in stream:
            answer += chunk["choices"][0]["delta"].get("content") or ""
            yield answer
        return
    from transformers import TextIteratorStreamer

    if TOKENIZER.chat_template:
        prompt = TOKENIZER.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        prompt = "\n".join(m["content"] for m in messages) + "\n"
    inputs = TOKENIZER(prompt, return_tensors="pt", add_special_tokens=False).to(MODEL_OBJECT.device)
    stops = [i for i in (TOKENIZER.convert_tokens_to_ids(t) for t in STOP_TOKENS)
             if isinstance(i, int) and i >= 0 and i != TOKENIZER.unk_token_id]
    sampling = {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": int(top_k)}
    streamer = TextIteratorStreamer(TOKENIZER, skip_prompt=True, skip_special_tokens=True)
    kwargs = {**inputs, "streamer": streamer, "max_new_tokens": int(max_new_tokens),
              "repetition_penalty": float(repetition_penalty), "eos_token_id": sorted(set(stops) | {TOKENIZER.eos_token_id} - {None}),
              "pad_token_id": TOKENIZER.pad_token_id if TOKENIZER.pad_token_id is not None else TOKENIZER.eos_token_id,
              **(sampling if temperature > 0 else {"do_sample": False})}
    Thread(target=MODEL_OBJECT.generate, kwargs=kwargs, daemon=True).start()
    answer = ""
    for piece in streamer:
        answer += piece
        yield answer


demo = gr.ChatInterface(
    respond,
    title=TITLE,
    description=DESCRIPTION,
    additional_inputs=[
        gr.Textbox(value=SYSTEM_PROMPT, label="System prompt"),
        gr.Slider(1, 4096, value=MAX_NEW_TOKENS, step=1, label="Max new tokens"),
        gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature (0: greedy)"),
        gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p"),
        gr.Slider(0, 200, value=40, step=1, label="Top-k (0: off)"),
        gr.Slider(1.0, 2.0, value=1.1, step=0.05, label="Repetition penalty"),
    ],
    additional_inputs_accordion=gr.Accordion(label="Settings", open=False),
    api_name="chat",  # clients call /chat, as on the course's Spaces
)

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch()

"""Recipe for `llmcourse quantize`: one source model, one or more formats, one quality report.

Each format has its own section (`gguf:`, `int8:`, `bnb:`, `hqq:`, `gptq:`, `awq:`, `exl2:`); a format's methods are checked against the names
its engine offers before any weight is loaded (`llmcourse.quantize.registry`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from llmcourse.recipes.base import CommandRecipe, Recipe


class GgufSection(Recipe):
    """llama.cpp GGUF: the quant types to write and the importance matrix."""

    methods: list[str] = Field(default_factory=lambda: ["Q4_K_M"])
    imatrix: str | None = Field(default=None, description="`auto` (computed from the calibration text) or an imatrix file")
    pre_tokenizer: str | None = Field(default=None, description="llama.cpp pre-tokenizer name for a BPE tokenizer it does not recognize")
    keep_intermediate: bool = Field(default=False, description="keep the F32/F16/BF16 GGUF the quants are made from")

    @field_validator("methods")
    @classmethod
    def _upper(cls, methods: list[str]) -> list[str]:
        return [m.upper() for m in methods]


class Int8Section(Recipe):
    """The course's naive 8-bit quantization: quantize, dequantize, save an ordinary HF folder."""

    methods: list[str] = Field(default_factory=lambda: ["absmax"])
    granularity: Literal["tensor", "channel"] = "tensor"
    histograms: bool = True


class BnbSection(Recipe):
    """bitsandbytes: 4-bit nf4 / fp4 (double quantization on or off) and 8-bit int8."""

    methods: list[str] = Field(default_factory=lambda: ["nf4"])
    double_quant: bool = True


class HqqSection(Recipe):
    """HQQ (hqq package, no calibration): bit widths, group size and the grouping axis."""

    methods: list[str] = Field(default_factory=lambda: ["4bit"], description="bit widths: 8bit, 4bit, 3bit, 2bit, 1bit")
    group_size: int = Field(default=64, gt=0, description="weights per scale/zero group; must divide the hidden and MLP sizes")
    axis: Literal[0, 1] = Field(default=1, description="1 groups along the input dimension (hqq's default), 0 along the output")

    @field_validator("methods")
    @classmethod
    def _lower(cls, methods: list[str]) -> list[str]:
        return [m.lower() for m in methods]


class GptqSection(Recipe):
    """GPTQ (GPTQModel): bit widths, group size, Hessian damping, act-order, symmetry."""

    methods: list[str] = Field(default_factory=lambda: ["4bit"], description="bit widths: 8bit, 4bit, 3bit, 2bit")
    group_size: int = Field(default=128, description="weights per scale group (-1: one per row); must divide the hidden and MLP sizes")
    damp_percent: float = Field(default=0.05, gt=0, lt=1, description="dampening added to the Hessian diagonal, as a fraction of its mean")
    desc_act: bool = Field(default=False, description="quantize columns in order of decreasing activation (act-order)")
    sym: bool = Field(default=True, description="symmetric quantization (no zero point)")

    @field_validator("methods")
    @classmethod
    def _lower(cls, methods: list[str]) -> list[str]:
        return [m.lower() for m in methods]


class AwqSection(Recipe):
    """AWQ (GPTQModel): 4-bit, group size, zero point, kernel layout."""

    methods: list[str] = Field(default_factory=lambda: ["4bit"], description="bit width: 4bit")
    group_size: int = Field(default=128, description="weights per scale group (-1: one per row); must divide the hidden and MLP sizes")
    zero_point: bool = Field(default=True, description="asymmetric quantization with a zero point per group")
    kernel: Literal["gemm", "gemv"] = Field(default="gemm", description="saved layout: gemm (batches) or gemv (single-stream decoding)")

    @field_validator("methods")
    @classmethod
    def _lower(cls, methods: list[str]) -> list[str]:
        return [m.lower() for m in methods]


class Exl2Section(Recipe):
    """ExLlamaV2 (CUDA only): bits per weight, head bits, calibration, resumable work folder."""

    methods: list[str] = Field(default_factory=lambda: ["4.0"], description="bits per weight, e.g. 4.0, 5.0, 6.5")
    head_bits: int = Field(default=6, ge=2, le=8)
    work_dir: str | None = Field(default=None, description="resumable work folder (default: beside the output)")


class QuantizeRecipe(CommandRecipe):
    """`llmcourse quantize`: a source model and the formats to quantize it to."""

    model: str = Field(min_length=1, description="HF folder or hub id")
    formats: list[str] = Field(default_factory=lambda: ["gguf"], min_length=1)
    gguf: GgufSection = Field(default_factory=GgufSection)
    int8: Int8Section = Field(default_factory=Int8Section)
    bnb: BnbSection = Field(default_factory=BnbSection)
    hqq: HqqSection = Field(default_factory=HqqSection)
    gptq: GptqSection = Field(default_factory=GptqSection)
    awq: AwqSection = Field(default_factory=AwqSection)
    exl2: Exl2Section = Field(default_factory=Exl2Section)
    calibration: str = Field(default="lab://corpus", description="calibration text: lab://corpus, lab://chat, a .txt/.jsonl file or a hub dataset id")
    calibration_split: str = Field(default="train", description="split of a hub calibration dataset")
    calibration_field: str = Field(default="text", description="text column of a hub calibration dataset")
    calibration_config: str | None = Field(default=None, description="configuration of a hub calibration dataset (e.g. wikitext-2-raw-v1)")
    calibration_samples: int = Field(default=64, gt=0)
    eval_text: str = Field(default="lab", description="held-out text for the report: `lab` or a .txt/.jsonl file")
    eval_tokens: int = Field(default=8192, gt=0, description="tokens of eval text the report scores")
    eval_block_size: int | None = Field(default=None, gt=1, description="tokens per scored window (default 128 on lab text, else 512)")
    report: bool = True
    push_to_hub: str | None = None
    private: bool = False
    license: str | None = None

    @field_validator("formats")
    @classmethod
    def _lower(cls, formats: list[str]) -> list[str]:
        return list(dict.fromkeys(f.lower() for f in formats))

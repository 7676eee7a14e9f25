"""Evaluation suites: named task lists with their few-shot counts and the metric each one averages
by (LLM AutoEval's rules: acc_norm falling back to acc, mc2 for TruthfulQA, strict exact match for
GSM8K). A registry, like the quantize formats: `@register_suite` adds one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from llmcourse.core.errors import UserError, choose


@dataclass(frozen=True)
class TaskSpec:
    """One lm-eval task as a suite runs it."""

    name: str
    num_fewshot: int | None = None  # None: the task's own default (or --num-fewshot)


@dataclass(frozen=True)
class Suite:
    """A named set of tasks; `local` suites need no hub data."""

    name: str
    description: str
    tasks: tuple[TaskSpec, ...]
    local: bool = False
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # AutoEval's per-benchmark averages


SUITES: dict[str, Callable[[], Suite]] = {}


def register_suite(name: str) -> Callable[[Callable[[], Suite]], Callable[[], Suite]]:
    """Decorator: register a function that builds the suite `name`."""

    def wrap(builder: Callable[[], Suite]) -> Callable[[], Suite]:
        SUITES[name] = builder
        return builder

    return wrap


def get_suite(name: str) -> Suite:
    """The registered suite `name` (exit 2 with the list of suites when unknown)."""
    choose("suite", name, [*SUITES, "custom"])
    return SUITES[name]()


AGIEVAL = ("agieval_aqua_rat", "agieval_logiqa_en", "agieval_lsat_ar", "agieval_lsat_lr", "agieval_lsat_rc", "agieval_sat_en",
           "agieval_sat_en_without_passage", "agieval_sat_math")
GPT4ALL = ("hellaswag", "openbookqa", "winogrande", "arc_easy", "arc_challenge", "boolq", "piqa")
TRUTHFULQA = ("truthfulqa_mc2",)
BIGBENCH = tuple(f"bigbench_{name}_multiple_choice" for name in (
    "causal_judgment", "date_understanding", "disambiguation_qa", "geometric_shapes", "logical_deduction",
    "movie_recommendation", "navigate", "reasoning_about_colored_objects", "ruin_names",
    "salient_translation_error_detection", "snarks", "sports_understanding", "temporal_sequences",
    "tracking_shuffled_objects"))


@register_suite("nous")
def nous() -> Suite:
    """LLM AutoEval's Nous suite: AGIEval, GPT4All, TruthfulQA and BIG-bench, zero-shot."""
    groups = {"AGIEval": AGIEVAL, "GPT4All": GPT4ALL, "TruthfulQA": TRUTHFULQA, "Bigbench": BIGBENCH}
    tasks = tuple(TaskSpec(name, 0) for names in groups.values() for name in names)
    return Suite("nous", "AGIEval, GPT4All, TruthfulQA, Bigbench (LLM AutoEval's nous)", tasks, groups=groups)


@register_suite("openllm")
def openllm() -> Suite:
    """The Open LLM Leaderboard (v1) tasks with its few-shot counts."""
    shots = {"arc_challenge": 25, "hellaswag": 10, "mmlu": 5, "truthfulqa_mc2": 0, "winogrande": 5, "gsm8k": 5}
    return Suite("openllm", "Open LLM Leaderboard v1: ARC 25, HellaSwag 10, MMLU 5, TruthfulQA 0, Winogrande 5, GSM8K 5",
                 tuple(TaskSpec(name, n) for name, n in shots.items()), groups={name: (name,) for name in shots})


@register_suite("lab")
def lab() -> Suite:
    """The lab skills: held-out exact match (generation) and two-choice log-likelihood, local data."""
    from llmcourse.lab import skills

    tasks = tuple(TaskSpec(f"lab_{name}{kind}", 0) for name in skills.SKILLS for kind in ("", "_mc"))
    groups = {"exact match": tuple(f"lab_{n}" for n in skills.SKILLS), "choice": tuple(f"lab_{n}_mc" for n in skills.SKILLS)}
    return Suite("lab", "the lab skills (exact match and two-choice log-likelihood), local data", tasks, local=True, groups=groups)


# The metric a task is averaged by, most specific first (AutoEval's rules).
METRIC_PREFERENCE = ("exact_match,strict-match", "mc2,none", "acc_norm,none", "acc,none", "exact_match,none",
                     "exact_match,flexible-extract", "word_perplexity,none")


def headline_metric(task: str, metrics: dict[str, object]) -> str | None:
    """The key of the metric that stands for `task` in averages (None when it reports nothing usable)."""
    for key in METRIC_PREFERENCE:
        if isinstance(metrics.get(key), (int, float)):
            return key
    return next((k for k, v in metrics.items() if "," in k and "_stderr" not in k and isinstance(v, (int, float))), None)


def custom_suite(tasks: list[str], num_fewshot: int | None) -> Suite:
    """A suite of the tasks named on the command line."""
    if not tasks:
        raise UserError("--suite custom needs --tasks", hint="e.g. --tasks arc_easy,hellaswag, or --include-path DIR")
    return Suite("custom", "tasks named on the command line", tuple(TaskSpec(t, num_fewshot) for t in tasks))

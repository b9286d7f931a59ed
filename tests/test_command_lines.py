"""Every stage's command line is derived from its config: every field is reachable as a flag,
and building the parser imports none of the heavy packages, so `--help` is instant."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys

import pytest

from midimix.options import config_fields

# stage module -> {config class path: fields the command sets itself (positional inputs...)}
STAGE_CONFIGS: dict[str, dict[str, tuple[str, ...]]] = {
    "collect": {"midimix.collect:CollectConfig": ()},
    "prepare": {"midimix.prepare:PrepareConfig": ()},
    "inspect": {"midimix.inspect:InspectConfig": ()},
    "transcribe": {"midimix.transcribe:TranscribeConfig": ()},
    "tokenize": {"midimix.tokenize:TokenizeConfig": ()},
    "train": {"midimix.train:TrainConfig": ()},
    "generate": {"midimix.generate:GenerateConfig": ()},
    "render": {"midimix.render:RenderConfig": ()},
    "evaluate": {"midimix.evaluate:EvaluateConfig": ()},
    "sweep": {"midimix.sweep:SweepConfig": ()},
    "corpus": {"midimix.corpus:CorpusConfig": ()},
    "pipeline": {"midimix.pipeline:PipelineConfig": ()},
    "studio": {"midimix.studio:StudioConfig": ()},
}
HEAVY = ("torch", "transformers", "pedalboard", "onnxruntime", "basic_pitch", "librosa")


def _load(ref: str) -> type:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _parser_module(stage: str) -> str:
    from midimix.cli import main_module

    return main_module(stage)


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_every_config_field_has_a_flag(stage: str) -> None:
    parser = importlib.import_module(_parser_module(stage)).build_parser()
    dests = {action.dest for action in parser._actions}
    for ref, skipped in STAGE_CONFIGS[stage].items():
        missing = [f for f in config_fields(_load(ref)) if f not in dests and f not in skipped]
        assert not missing, f"{stage}: fields without a flag: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_building_the_parser_imports_nothing_heavy(stage: str) -> None:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({_parser_module(stage)!r}).build_parser()\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [], f"{stage}: building the parser imported {out.stdout}"


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_no_option_takes_nan_or_infinity(stage: str) -> None:
    """Every number-taking flag refuses nan and inf while parsing (comparisons with NaN are all
    false, so a range check alone would let it through)."""
    parser = importlib.import_module(_parser_module(stage)).build_parser()
    checked = 0
    for action in parser._actions:
        if not action.option_strings or action.type is None or action.nargs not in (None, "?"):
            continue
        try:
            action.type("1.5")
        except Exception:  # noqa: BLE001 - a flag that takes no number at all
            continue
        for bad in ("nan", "inf", "-inf"):
            try:
                value = action.type(bad)
            except Exception:  # noqa: BLE001 - refused: what we want
                continue
            values = value if isinstance(value, tuple | list) else [value]
            taken = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
            assert not taken, f"{stage} {action.option_strings[0]} took {bad}"
        checked += 1
    assert checked > 0 or stage in ("studio",), f"{stage}: no number flag was checked"

"""The limits each bar's mix puts on sampling, from the genre statistics of the model folder.

A bar whose weights are w takes: at most the largest 99th percentile of notes per onset among
the genres with w > 0; tempos between the weighted 5th and 95th percentiles of the genres;
time signatures with a weighted share of at least 2%. A schedule moves them bar by bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from midimix.genre_stats import GenreStats, mix_onset_cap, mix_tempo_range, mix_time_signatures

if TYPE_CHECKING:
    import torch

    from midimix.sampling import BarLimits
    from midimix.tokenizer import GenreTokenizer


def bar_limits(
    tokenizer: GenreTokenizer,
    genres: list[str],
    table: torch.Tensor,
    stats: Mapping[str, GenreStats],
) -> BarLimits:
    """Per-bar limits for the weight table (n_bars, G) over `genres`."""
    import torch

    from midimix.sampling import SPECIAL_TYPE, BarLimits, value_mask

    types = tokenizer.token_types()
    base = [[] if t == SPECIAL_TYPE else tokenizer.base_tokens(i) for i, t in enumerate(types)]
    caps: list[int] = []
    masks: list[torch.Tensor] = []
    cache: dict[tuple[float, ...], tuple[int, torch.Tensor]] = {}
    for row in table.tolist():
        key = tuple(round(w, 4) for w in row)
        if key not in cache:
            weights = dict(zip(genres, key, strict=True))
            mask = value_mask(
                base, mix_tempo_range(stats, weights), mix_time_signatures(stats, weights)
            )
            cache[key] = (mix_onset_cap(stats, weights), mask)
        cap, mask = cache[key]
        caps.append(cap)
        masks.append(mask)
    # a schedule states its tempo from the start, so that the tempo can follow the mix
    moving = len(cache) > 1
    return BarLimits(torch.tensor(caps, dtype=torch.long), torch.stack(masks), moving)

"""Logit processors for genre-mixed sampling: pure functions over tensors.

One decoding step goes: per-condition log-probabilities -> genre mix -> guidance -> grammar
mask -> temperature -> top-k -> top-p -> one sampled id per row. Shapes in the comments use
S = samples, G = genres (conditions), V = vocabulary, B = rows of the batch.

The grammar is built from the tokenizer itself: miditok's graph of which token type may follow
which (`tokens_types_graph`), plus the base tokens behind every id (one without BPE, several
with it), so it follows whatever scheme (REMI, TSD) and options the tokenizer was built with.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from midimix.errors import ConfigError
from midimix.genre_stats import MOVE_TYPES, tempo_in_range

MIX_RULES = ("product", "mixture")
NOTE_TYPE_PREFIX = "Pitch"  # Pitch, PitchDrum, PitchIntervalTime/Chord all start a note
BAR_TYPE = "Bar"
POSITION_TYPE = "Position"
TIME_SIG_TYPE = "TimeSig"
TEMPO_TYPE = "Tempo"
PITCHES = 128  # MIDI pitch numbers: the width of the per-onset pitch sets
SPECIAL_TYPE = "Special"
START_STATE = "<start>"
UNREACHABLE = 1 << 20  # distance of a state from which a target type cannot be reached
NO_LIMIT = 1 << 30  # bar length in positions when the tokenizer's grid is not known


# ---------------------------------------------------------------------------------------
# Genre mix, guidance and sampling filters


def combine_logprobs(
    logp: torch.Tensor, weights: torch.Tensor, rule: str = "product"
) -> torch.Tensor:
    """Mix per-genre next-token log-probabilities by the weights.

    logp: (S, G, V) normalised log-probabilities; weights: (S, G), non-negative, rows sum to 1.
    Returns (S, V) scores (unnormalised log-probabilities; sampling only needs them up to a
    per-row constant).
    - "product": sum_g w_g * logp_g, the log-linear mixture (a weighted product of experts):
      tokens must be plausible under every genre with a positive weight;
    - "mixture": log sum_g w_g * p_g, the mixture of probabilities: each step may follow either.
    A weight of exactly 0 drops its genre entirely, so weights 1/0 give that genre's logp.
    """
    w = weights.to(logp.dtype).unsqueeze(-1)  # (S, G, 1)
    if rule == "product":
        # where() rather than w * logp so that 0 * -inf (a masked id) stays 0, not nan
        return torch.where(w > 0, w * logp, torch.zeros_like(logp)).sum(dim=1)
    if rule == "mixture":
        return torch.logsumexp(torch.log(w) + logp, dim=1)  # log(0) = -inf drops a genre
    raise ConfigError(f"mix rule must be one of {', '.join(MIX_RULES)}; got {rule!r}")


def apply_guidance(mixed: torch.Tensor, logp_any: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: mixed + scale * (mixed - logp_any); (S, V) each -> (S, V).

    Pushes the distribution away from what the model plays without a genre, towards what is
    specific to the mix. scale 0 returns `mixed` unchanged."""
    if scale == 0:
        return mixed
    return mixed + scale * (mixed - logp_any)


def apply_temperature(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, V) -> (B, V): divide by the temperature (< 1 sharper, > 1 flatter)."""
    return scores if temperature == 1.0 else scores / temperature


def apply_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(B, V) -> (B, V): keep the k best ids of each row (0 keeps all)."""
    if k <= 0 or k >= scores.shape[-1]:
        return scores
    kth = torch.topk(scores, k, dim=-1).values[:, -1:]  # (B, 1)
    return scores.masked_fill(scores < kth, float("-inf"))


def apply_top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    """(B, V) -> (B, V): nucleus filtering, keep the smallest set of ids whose probability
    reaches p (the most likely id always stays). p >= 1 keeps all."""
    if p >= 1.0:
        return scores
    sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
    probs = torch.softmax(sorted_scores, dim=-1)
    drop_sorted = (probs.cumsum(dim=-1) - probs) >= p  # mass before this id
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))


def sample_ids(scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(B, V) scores -> (B,) ids drawn from softmax(scores)."""
    probs = torch.softmax(scores.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ---------------------------------------------------------------------------------------
# Genre schedules


Keyframe = tuple[float, dict[str, float]]  # (place in the piece 0..1, weights)


def interpolate_keyframes(
    keyframes: Sequence[Keyframe], genres: Sequence[str], n_bars: int
) -> torch.Tensor:
    """Per-bar weights (n_bars, G), linear between keyframes placed at bar / (n_bars - 1),
    held flat before the first and after the last; each row normalised to sum 1."""
    if not keyframes:
        raise ConfigError("a genre schedule needs at least one keyframe")
    places = torch.tensor([place for place, _ in keyframes], dtype=torch.float64)
    vectors = torch.tensor(
        [[float(weights.get(g, 0.0)) for g in genres] for _, weights in keyframes],
        dtype=torch.float64,
    )  # (K, G)
    bars = torch.arange(n_bars, dtype=torch.float64)
    x = bars / max(n_bars - 1, 1)  # (n_bars,) place of each bar in the piece
    out = torch.empty(n_bars, len(genres), dtype=torch.float64)
    for b in range(n_bars):
        right = int(torch.searchsorted(places, x[b], right=True))
        if right == 0:
            out[b] = vectors[0]
        elif right == len(places):
            out[b] = vectors[-1]
        else:
            x0, x1 = places[right - 1], places[right]
            t = (x[b] - x0) / (x1 - x0) if x1 > x0 else torch.tensor(1.0, dtype=torch.float64)
            out[b] = (1 - t) * vectors[right - 1] + t * vectors[right]
    return (out / out.sum(dim=1, keepdim=True)).float()


# ---------------------------------------------------------------------------------------
# Grammar


@dataclass
class Grammar:
    """Tables for grammar-constrained decoding, one row per state (the type of the last base
    token) and one column per id. Built once per tokenizer by `build_grammar`."""

    states: list[str]  # state names: START_STATE, then the musical token types
    allowed: torch.Tensor  # (n_states, V) bool: id may follow a token that ended in this state
    next_state: torch.Tensor  # (V,) long: state after the id (its last base token's type)
    bars_in: torch.Tensor  # (V,) long: Bar tokens inside the id (0 or 1)
    has_note: torch.Tensor  # (V,) bool: the id holds a note-starting token
    first_pos: torch.Tensor  # (V,) long: value of its first Position token, -1 if none
    last_pos: torch.Tensor  # (V,) long: value of its last Position token, -1 if none
    bar_positions: torch.Tensor  # (V,) long: positions in a bar of its time signature, else -1
    can_end: torch.Tensor  # (n_states,) bool: a piece may stop here (a bar line may follow)
    dist_bar: torch.Tensor  # (n_states,) long: fewest tokens to a Bar
    dist_note: torch.Tensor  # (n_states,) long: fewest tokens to a note
    eos_id: int
    has_bars: bool  # False for schemes without Bar tokens (TSD): length then counts tokens
    default_bar_positions: int  # positions in a 4/4 bar (NO_LIMIT when not known)
    starts_bar: torch.Tensor  # (1, V) bool: the id starts with a bar line
    pos_free: torch.Tensor  # (1, V) bool: the id never moves back in time (no Position, or a Bar)
    # clean notes: which pitches an id starts at the current onset (before any move inside it)
    # and at the onset it moves to (after its last move)
    onset_pitches: torch.Tensor  # (V, 128) bool
    after_pitches: torch.Tensor  # (V, 128) bool
    moves: torch.Tensor  # (V,) bool: the id holds a Bar or Position (a new onset)
    has_tempo: torch.Tensor  # (V,) bool: the id sets a tempo
    tempo_follows: torch.Tensor  # (n_states,) bool: a Tempo token may come next
    # derived in __post_init__, so that a decoding step does not rebuild them
    onset_matrix: torch.Tensor = field(init=False, repr=False)  # (128, V) float onset_pitches.T
    onset_adds: torch.Tensor = field(init=False, repr=False)  # (V,) long: notes an id adds
    no_adds: torch.Tensor = field(init=False, repr=False)  # (1, V) bool: adds no note
    first_pos_row: torch.Tensor = field(init=False, repr=False)  # (1, V) first_pos
    last_pos_row: torch.Tensor = field(init=False, repr=False)  # (1, V) last_pos
    sets_sig: torch.Tensor = field(init=False, repr=False)  # (1, V) bool: bar_positions > 0
    sig_fits: torch.Tensor = field(init=False, repr=False)  # (1, V) bool: last_pos < its bar
    # what `advance` reads of each id, one gather per step: (V, 8) long and (V, 2, 128) bool
    id_values: torch.Tensor = field(init=False, repr=False)
    id_pitches: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.onset_matrix = self.onset_pitches.float().T.contiguous()
        self.onset_adds = self.onset_pitches.sum(dim=1)
        self.no_adds = (self.onset_adds == 0).unsqueeze(0)
        self.first_pos_row = self.first_pos.unsqueeze(0)
        self.last_pos_row = self.last_pos.unsqueeze(0)
        self.sets_sig = (self.bar_positions > 0).unsqueeze(0)
        self.sig_fits = self.last_pos_row < self.bar_positions.unsqueeze(0)
        sets_pos = (self.bars_in > 0) | (self.last_pos >= 0)
        columns = [self.bars_in, self.has_note, self.last_pos, self.next_state]
        columns += [self.bar_positions, self.moves, self.has_tempo, sets_pos]
        self.id_values = torch.stack([c.long() for c in columns], dim=1)
        self.id_pitches = torch.stack([self.after_pitches, self.onset_pitches], dim=1)

    @property
    def start_state(self) -> int:
        return 0

    def state_after(self, ids: Sequence[int]) -> int:
        """The state after a prompt (START for an empty one)."""
        return int(self.next_state[ids[-1]]) if ids else self.start_state


def _value(token: str) -> int:
    match = re.search(r"_(-?\d+)$", token)
    return int(match.group(1)) if match else -1


def _distances(graph: Mapping[str, set[str]], states: list[str], targets: set[str]) -> list[int]:
    """Fewest emitted tokens from each state until one of the target types is emitted."""
    dist = {s: UNREACHABLE for s in states}
    queue: deque[str] = deque()
    for s in states:
        if graph.get(s, set()) & targets:
            dist[s] = 1
            queue.append(s)
    while queue:  # reverse BFS: s reaches a target through any successor t
        t = queue.popleft()
        for s in states:
            if dist[s] == UNREACHABLE and t in graph.get(s, set()):
                dist[s] = dist[t] + 1
                queue.append(s)
    return [dist[s] for s in states]


def build_grammar(
    base_tokens: Sequence[Sequence[str]],
    types_graph: Mapping[str, set[str]],
    eos_id: int,
    positions_per_beat: int = 0,
) -> Grammar:
    """Grammar tables from the base tokens behind each id (an empty list for special ids and
    ids that decode to nothing) and the tokenizer's type graph (type -> types that may follow).

    Where the scheme has bars (REMI): the first token of a piece is a Bar, so that the first
    bar counts; a time signature comes only right after a Bar (miditok's graph also allows one
    after a mid-bar Tempo, which would move every later bar line); with `positions_per_beat`,
    Position values stay inside the bar of the current time signature (numerator x positions
    per beat, as miditok counts them), so no note spills into the next bar."""
    musical = sorted({tok.split("_")[0] for toks in base_tokens for tok in toks})
    states = [START_STATE, *musical]
    index = {name: i for i, name in enumerate(states)}
    graph = {s: set(types_graph.get(s, set())) & set(musical) for s in musical}
    has_bars = BAR_TYPE in musical
    graph[START_STATE] = {BAR_TYPE} if has_bars else set(musical)
    if has_bars and TIME_SIG_TYPE in graph[BAR_TYPE]:
        for s in states:
            if s != BAR_TYPE:
                graph[s].discard(TIME_SIG_TYPE)

    vocab = len(base_tokens)
    allowed = torch.zeros(len(states), vocab, dtype=torch.bool)
    next_state = torch.zeros(vocab, dtype=torch.long)
    bars_in = torch.zeros(vocab, dtype=torch.long)
    has_note = torch.zeros(vocab, dtype=torch.bool)
    first_pos = torch.full((vocab,), -1, dtype=torch.long)
    last_pos = torch.full((vocab,), -1, dtype=torch.long)
    bar_positions = torch.full((vocab,), -1, dtype=torch.long)
    onset_pitches = torch.zeros(vocab, PITCHES, dtype=torch.bool)
    after_pitches = torch.zeros(vocab, PITCHES, dtype=torch.bool)
    moves = torch.zeros(vocab, dtype=torch.bool)
    has_tempo = torch.zeros(vocab, dtype=torch.bool)
    for i, toks in enumerate(base_tokens):
        if not toks:
            continue  # special: never sampled (the end is decided by the loop)
        kinds = [tok.split("_")[0] for tok in toks]
        _onset_tables(toks, kinds, onset_pitches[i], after_pitches[i])
        moves[i] = any(k in MOVE_TYPES for k in kinds)
        has_tempo[i] = TEMPO_TYPE in kinds
        next_state[i] = index[kinds[-1]]
        bars_in[i] = kinds.count(BAR_TYPE)
        has_note[i] = any(k.startswith(NOTE_TYPE_PREFIX) for k in kinds)
        positions = [_value(t) for t, k in zip(toks, kinds, strict=True) if k == POSITION_TYPE]
        if positions:
            first_pos[i], last_pos[i] = positions[0], positions[-1]
        signatures = [t for t, k in zip(toks, kinds, strict=True) if k == TIME_SIG_TYPE]
        if signatures and positions_per_beat:
            numerator = int(signatures[-1].split("_")[1].split("/")[0])  # TimeSig_3/4 -> 3
            bar_positions[i] = numerator * positions_per_beat
        for s in states:
            if kinds[0] in graph[s]:
                allowed[index[s], i] = True
    bar_types = {BAR_TYPE} if has_bars else set()
    note_types = {t for t in musical if t.startswith(NOTE_TYPE_PREFIX)}
    can_end = torch.tensor([BAR_TYPE in graph[s] or not has_bars for s in states])
    can_end[0] = False  # never end before the first token
    return Grammar(
        states=states,
        allowed=allowed,
        next_state=next_state,
        bars_in=bars_in,
        has_note=has_note,
        first_pos=first_pos,
        last_pos=last_pos,
        bar_positions=bar_positions,
        can_end=can_end,
        dist_bar=torch.tensor(_distances(graph, states, bar_types)),
        dist_note=torch.tensor(_distances(graph, states, note_types)),
        eos_id=eos_id,
        has_bars=has_bars,
        default_bar_positions=4 * positions_per_beat if positions_per_beat else NO_LIMIT,
        starts_bar=(bars_in > 0).unsqueeze(0),
        pos_free=((first_pos < 0) | (bars_in > 0)).unsqueeze(0),
        onset_pitches=onset_pitches,
        after_pitches=after_pitches,
        moves=moves,
        has_tempo=has_tempo,
        tempo_follows=torch.tensor([TEMPO_TYPE in graph[s] for s in states]),
    )


def _onset_tables(
    toks: Sequence[str], kinds: Sequence[str], before: torch.Tensor, after: torch.Tensor
) -> None:
    """Mark the pitches an id starts before its first move (`before`) and after its last
    (`after`); an id without a move starts all its notes at the current onset."""
    moved = False
    for tok, kind in zip(toks, kinds, strict=True):
        if kind in MOVE_TYPES:
            moved = True
            after.zero_()
        elif kind.startswith(NOTE_TYPE_PREFIX):
            pitch = _value(tok)
            if 0 <= pitch < PITCHES:
                (after if moved else before)[pitch] = True


@dataclass
class GrammarState:
    """Per-row decoding state, all tensors (B,)."""

    state: torch.Tensor  # long: grammar state (type of the last base token)
    bars_done: torch.Tensor  # long: Bar tokens generated so far
    bar_has_note: torch.Tensor  # bool: the current bar holds a note
    bar_tokens: torch.Tensor  # long: tokens generated since the last Bar
    cur_pos: torch.Tensor  # long: last Position value in the current bar, -1 at a bar line
    notes: torch.Tensor  # long: notes generated so far
    bar_limit: torch.Tensor  # long: positions in the current bar
    onset_pitches: torch.Tensor  # (B, 128) bool: pitches started at the current onset
    tempo_id: torch.Tensor  # long: the id that set the current tempo, -1 before any

    @classmethod
    def start(
        cls,
        rows: int,
        state: int = 0,
        bar_has_note: bool = False,
        cur_pos: int = -1,
        bar_limit: int = NO_LIMIT,
    ) -> GrammarState:
        zeros = torch.zeros(rows, dtype=torch.long)
        return cls(
            state=torch.full((rows,), state, dtype=torch.long),
            bars_done=zeros.clone(),
            bar_has_note=torch.full((rows,), bar_has_note, dtype=torch.bool),
            bar_tokens=zeros.clone(),
            cur_pos=torch.full((rows,), cur_pos, dtype=torch.long),
            notes=zeros.clone(),
            bar_limit=torch.full((rows,), bar_limit, dtype=torch.long),
            onset_pitches=torch.zeros(rows, PITCHES, dtype=torch.bool),
            tempo_id=torch.full((rows,), -1, dtype=torch.long),
        )


@dataclass
class RowLimits:
    """What the genres in each row's mix allow now (see `midimix.genre_stats`), per row."""

    onset_cap: torch.Tensor  # (B,) long: most notes on one onset
    allowed: torch.Tensor  # (B, V) bool: ids whose tempo / time signature the mix allows
    tempo_first: bool = False  # a tempo at the first Position even if the model writes none


def onset_and_value_mask(g: Grammar, st: GrammarState, limits: RowLimits | None) -> torch.Tensor:
    """(B, V) bool: no pitch started twice on one onset; with limits, no more notes on an
    onset than the cap, only tempos and time signatures of the mix, and a tempo of the mix at
    the next Position of a bar whose mix no longer allows the tempo stated (with
    `tempo_first`, also at the first Position of a piece that states none). A piece may start
    without a tempo, as the training windows that begin mid-piece do: forcing one there made
    pieces sound like openings, thinner than the genre's (docs/generate.md); generation then
    writes a tempo drawn from the genres' (`midimix.genre_stats.draw_mix_tempo`)."""
    shared = st.onset_pitches.float() @ g.onset_matrix  # (B, V) pitches in common
    ok = shared == 0
    if limits is None:
        return ok
    onset_notes = st.onset_pitches.sum(dim=1)  # (B,)
    room = (limits.onset_cap - onset_notes).unsqueeze(1)  # (B, 1) notes the onset still takes
    ok &= g.no_adds | (g.onset_adds <= room)
    ok &= limits.allowed
    current = limits.allowed.gather(1, st.tempo_id.clamp(min=0).unsqueeze(1)).squeeze(1)
    stated = st.tempo_id >= 0
    need_tempo = ((stated & ~current) | (~stated & limits.tempo_first)) & g.tempo_follows[st.state]
    tempo_ok = ok & g.has_tempo.unsqueeze(0) & g.allowed[st.state]
    force = need_tempo & tempo_ok.any(dim=1)
    return torch.where(force.unsqueeze(1), tempo_ok, ok)


def grammar_mask(
    g: Grammar,
    st: GrammarState,
    target_bars: int | None,
    max_tokens_per_bar: int,
    limits: RowLimits | None = None,
) -> torch.Tensor:
    """(B, V) bool: the ids each row may sample now.

    - only ids whose first type may follow the row's state; no special ids;
    - clean notes and the mix's limits (`onset_and_value_mask`);
    - Position values move forward within a bar;
    - the end (EOS, or a Bar once `target_bars` bars are done) only after the requested bars,
      only where a bar line may follow (a whole note) and only once the last bar has a note;
    - a bar longer than `max_tokens_per_bar` is steered to its bar line (or, in the last bar
      without a note, to a note) along the shortest path of the type graph, so every piece
      reaches its length.
    """
    allowed = g.allowed[st.state]  # (B, V), a fresh tensor
    allowed &= g.pos_free | (g.first_pos_row > st.cur_pos.unsqueeze(1))  # forward in the bar
    # inside the bar; an id that sets a time signature brings its own bar length
    allowed &= torch.where(g.sets_sig, g.sig_fits, g.last_pos_row < st.bar_limit.unsqueeze(1))
    allowed &= onset_and_value_mask(g, st, limits)
    if target_bars is None or not g.has_bars:
        return allowed

    last_bar = st.bars_done >= target_bars  # (B,)
    need_note = last_bar & ~st.bar_has_note
    allowed.masked_fill_(need_note.unsqueeze(1) & g.starts_bar, False)  # a last note first
    allowed[:, g.eos_id] = last_bar & st.bar_has_note & g.can_end[st.state]
    if int(st.bar_tokens.max()) < max_tokens_per_bar:
        return allowed
    long_bar = st.bar_tokens >= max_tokens_per_bar

    nxt = g.next_state.unsqueeze(0)  # (1, V)
    to_bar = g.starts_bar | (g.dist_bar[nxt] < g.dist_bar[st.state].unsqueeze(1))
    to_note = g.has_note.unsqueeze(0) | (g.dist_note[nxt] < g.dist_note[st.state].unsqueeze(1))
    steer = torch.where(need_note.unsqueeze(1), to_note, to_bar)  # (B, V)
    steer[:, g.eos_id] = True
    steered = torch.where(long_bar.unsqueeze(1), allowed & steer, allowed)
    # grammar alone for a row the steering would leave without a choice (not seen in REMI)
    return torch.where(steered.any(dim=1, keepdim=True), steered, allowed)


def advance(
    g: Grammar, st: GrammarState, ids: torch.Tensor, target_bars: int | None
) -> torch.Tensor:
    """Update the state in place with the sampled ids (B,); return (B,) bool: the row ended
    with this id (EOS, or a bar line after the requested bars), which is then not kept."""
    values = g.id_values[ids]  # (B, 8): one gather for every per-id table
    bars, note01, last_pos, state, sig, moved, tempo, sets_pos = values.unbind(1)
    new_bar = bars > 0
    note = note01 > 0
    ended = ids == g.eos_id
    if target_bars is not None and g.has_bars:
        ended |= new_bar & (st.bars_done >= target_bars)
    st.state = state
    st.bars_done = st.bars_done + bars.masked_fill(ended, 0)
    st.bar_has_note = torch.where(new_bar, note, st.bar_has_note | note)
    st.bar_tokens = (st.bar_tokens + 1).masked_fill_(new_bar, 0)
    st.cur_pos = torch.where(sets_pos > 0, last_pos, st.cur_pos)  # a Bar or a Position
    st.notes = st.notes + note01
    st.bar_limit = torch.where(sig > 0, sig, st.bar_limit)
    after, onset = g.id_pitches[ids].unbind(1)  # (B, 128) each
    st.onset_pitches = torch.where((moved > 0).unsqueeze(1), after, st.onset_pitches | onset)
    st.tempo_id = torch.where(tempo > 0, ids, st.tempo_id)
    return ended


def mask_scores(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(B, V) scores, (B, V') allowed -> (B, V); ids beyond the grammar's vocabulary (padding
    rows of the model's embedding) are never allowed."""
    vocab = allowed.shape[1]
    if scores.shape[1] > vocab:
        pad = torch.zeros(allowed.shape[0], scores.shape[1] - vocab, dtype=torch.bool)
        allowed = torch.cat([allowed, pad], dim=1)
    return scores.masked_fill(~allowed[:, : scores.shape[1]], float("-inf"))


# ---------------------------------------------------------------------------------------
# Limits of a mix, as id masks


@dataclass
class BarLimits:
    """The limits of each bar's mix (a schedule changes them bar by bar)."""

    onset_cap: torch.Tensor  # (n_bars,) long
    allowed: torch.Tensor  # (n_bars, V) bool
    tempo_first: bool = False  # see RowLimits: on for a schedule, whose tempo must move

    def rows(self, bar_index: torch.Tensor) -> RowLimits:
        return RowLimits(self.onset_cap[bar_index], self.allowed[bar_index], self.tempo_first)


def value_mask(
    base_tokens: Sequence[Sequence[str]],
    tempo_range_bpm: tuple[float, float] | None,
    time_signatures: set[str] | None,
) -> torch.Tensor:
    """(V,) bool: ids whose Tempo values lie in the range (tokens sit on a coarse grid: a bin
    within TEMPO_TOLERANCE counts, and when no bin does, the one nearest the range's middle)
    and whose TimeSig values are in the set (no restriction when the tokenizer has none)."""
    tempo_of = {i: _tempo(toks) for i, toks in enumerate(base_tokens)}
    values = sorted({v for vs in tempo_of.values() for v in vs})
    keep_tempos: set[float] = set(values)
    if tempo_range_bpm is not None and values:
        low, high = tempo_range_bpm
        keep_tempos = {v for v in values if tempo_in_range(v, low, high)}
        if not keep_tempos:
            middle = (low * high) ** 0.5
            keep_tempos = {min(values, key=lambda v: abs(v - middle))}
    known_sigs = {
        t.split("_", 1)[1] for toks in base_tokens for t in toks if t.startswith("TimeSig_")
    }
    sigs = time_signatures if time_signatures and time_signatures & known_sigs else None
    mask = torch.ones(len(base_tokens), dtype=torch.bool)
    for i, toks in enumerate(base_tokens):
        if any(v not in keep_tempos for v in tempo_of[i]):
            mask[i] = False
        if sigs is not None and any(
            t.startswith("TimeSig_") and t.split("_", 1)[1] not in sigs for t in toks
        ):
            mask[i] = False
    return mask


def _tempo(tokens: Sequence[str]) -> list[float]:
    out = []
    for tok in tokens:
        if tok.startswith(TEMPO_TYPE + "_"):
            try:
                out.append(float(tok.split("_", 1)[1]))
            except ValueError:
                continue
    return out

"""Constrained decoding: which tokens may come next, as a jit-friendly state machine.

A constraint is a pytree with three methods used inside the compiled decode loop:
`init(batch) -> state`, `allowed(state) -> bool [B, V]`, `update(state, token) -> state`.
`TokenDFA` covers action grammars (a finite automaton over token ids); `PrefixConstraint`
wraps any traceable function of the decoded prefix, the general hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np


class Constraint(Protocol):
    def init(self, batch_size: int): ...
    def allowed(self, state) -> jax.Array: ...
    def update(self, state, token: jax.Array): ...


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TokenDFA:
    """Deterministic automaton over token ids: `transitions[s, v]` is the next state or -1.

    A state whose row allows nothing would dead-end the decoder, so the construction helpers
    give every reachable state an exit (EOS at the end of a template).
    """

    transitions: jax.Array  # [S, V] int32
    row_starts: jax.Array | None = None  # [B] per-row start states (stacked grammars), else state 0

    def init(self, batch_size: int) -> jax.Array:
        if self.row_starts is not None:
            if self.row_starts.shape[0] != batch_size:
                raise ValueError(f"grammar has {self.row_starts.shape[0]} rows, the batch {batch_size}")
            return self.row_starts.astype(jnp.int32)
        return jnp.zeros((batch_size,), jnp.int32)

    @classmethod
    def stack(cls, per_row: Sequence[TokenDFA]) -> TokenDFA:
        """One automaton per batch row (e.g. different step numbers), as one table with offsets.

        Works on the device arrays (nothing is pulled back to the host); a row list that repeats
        one grammar stores its table once."""
        unique: dict[int, int] = {}
        tables, starts, offset = [], [], 0
        for dfa in per_row:
            if dfa.row_starts is not None:
                raise ValueError("cannot stack an already stacked grammar")
            if id(dfa) not in unique:
                t = jnp.asarray(dfa.transitions)
                tables.append(jnp.where(t >= 0, t + offset, -1))
                unique[id(dfa)] = offset
                offset += t.shape[0]
            starts.append(unique[id(dfa)])
        return cls(jnp.concatenate(tables), jnp.asarray(starts, jnp.int32))

    def allowed(self, state: jax.Array) -> jax.Array:
        return self.transitions[jnp.maximum(state, 0)] >= 0

    def update(self, state: jax.Array, token: jax.Array) -> jax.Array:
        nxt = self.transitions[jnp.maximum(state, 0), token]
        return jnp.where(state < 0, state, nxt)

    @classmethod
    def from_allowed(cls, ids: Iterable[int], vocab_size: int) -> TokenDFA:
        """One looping state: any of `ids` at every step (e.g. the real pieces of a small vocabulary)."""
        table = np.full((1, vocab_size), -1, np.int32)
        table[0, np.asarray(list(ids))] = 0
        return cls(jnp.asarray(table))

    @classmethod
    def from_slots(cls, slots: Sequence[Iterable[int] | int], vocab_size: int, eos_id: int = 1) -> TokenDFA:
        """A fixed-length template: slot i allows the given id(s); after the last slot only EOS,
        then EOS forever (so finished rows stay well-defined)."""
        return cls.from_sequences([slots], vocab_size, eos_id)

    @classmethod
    def from_sequences(
        cls,
        alternatives: Sequence[Sequence[Iterable[int] | int]],
        vocab_size: int,
        eos_id: int = 1,
        num_states: int | None = None,
    ) -> TokenDFA:
        """Any one of several templates (a trie over slots), then EOS, then EOS forever.

        Slots leaving one state must be identical or disjoint sets, so the automaton stays
        deterministic. `num_states` pads the table to a fixed size so that grammars that differ
        only in their tokens (e.g. the step number) reuse one compiled decoder.
        """
        rows: list[dict[frozenset[int], int]] = [{}]
        finals: set[int] = set()
        for a, alt in enumerate(alternatives):
            state = 0
            for i, slot in enumerate(alt):
                ids = frozenset([int(slot)] if isinstance(slot, int | np.integer) else (int(t) for t in slot))
                if not ids:
                    raise ValueError(f"constraint slot {i} of alternative {a} allows no token")
                if min(ids) < 0 or max(ids) >= vocab_size:
                    raise ValueError(
                        f"constraint slot {i} of alternative {a} has ids outside [0, {vocab_size})"
                    )
                edges = rows[state]
                if ids not in edges:
                    if any(ids & other for other in edges):
                        raise ValueError(f"slot {i} of alternative {a} overlaps another alternative's slot")
                    edges[ids] = len(rows)
                    rows.append({})
                state = edges[ids]
            finals.add(state)
        size = num_states if num_states is not None else len(rows)
        if size < len(rows):
            raise ValueError(f"grammar needs {len(rows)} states, more than num_states={size}")
        table = np.full((size, vocab_size), -1, np.int32)
        for state, edges in enumerate(rows):
            for ids, nxt in edges.items():
                table[state, np.fromiter(ids, np.int64)] = nxt
        for state in finals:
            if (table[state] >= 0).any() and table[state, eos_id] < 0:
                table[state, eos_id] = state  # a template that is a prefix of another may also end here
            elif not (table[state] >= 0).any():
                table[state, eos_id] = state
        return cls(jnp.asarray(table))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class PrefixConstraint:
    """The general hook: `fn(prefix [B, T], step) -> bool [B, V]`, traceable by jax.

    `prefix` holds the tokens decoded so far (position >= step are 0)."""

    max_length: int = field(metadata=dict(static=True))
    fn: Callable[[jax.Array, jax.Array], jax.Array] = field(metadata=dict(static=True))

    def init(self, batch_size: int) -> dict[str, jax.Array]:
        return {
            "prefix": jnp.zeros((batch_size, self.max_length), jnp.int32),
            "step": jnp.zeros((), jnp.int32),
        }

    def allowed(self, state) -> jax.Array:
        return self.fn(state["prefix"], state["step"])

    def update(self, state, token: jax.Array):
        prefix = jax.lax.dynamic_update_slice_in_dim(
            state["prefix"], token[:, None].astype(jnp.int32), state["step"], axis=1
        )
        return {"prefix": prefix, "step": state["step"] + 1}


def gather_state(state, index: jax.Array):
    """Reorder a constraint state's batch rows (beam search)."""
    return jax.tree_util.tree_map(lambda x: x[index] if x.ndim >= 1 else x, state)

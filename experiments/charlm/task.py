"""A small character-level transformer language model, trained on Python's own standard library.

The corpus is the source of the interpreter's standard library (``sysconfig``'s ``stdlib``
directory): the top-level ``*.py`` files in sorted name order, concatenated up to
``corpus_chars`` characters, so every worker and every run reads the same text and nothing is
downloaded. It is cut into windows of ``seq_len + 1`` characters: the model reads the first
``seq_len`` and predicts each next one.

Besides ``load_data`` and ``build_model``, the module declares how the model is split:
``tensor_parallel_plan`` (Megatron-style: attention and MLP input projections split by output
features, their output projections by input features) and ``fsdp_units`` (one FSDP unit, and one
activation-checkpointing unit, per transformer block).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

#: Newline, tab and printable ASCII; every other character maps to the last id.
ALPHABET = "\n\t" + "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = len(ALPHABET) + 1
_IDS = {c: i for i, c in enumerate(ALPHABET)}


def load_data(hparams: dict[str, object]) -> TensorDataset:
    """(token ids, next token ids) windows of ``seq_len`` over the standard library's source."""
    seq_len = int(hparams.get("seq_len", 64))  # type: ignore[call-overload]
    limit = int(hparams.get("corpus_chars", 200_000))  # type: ignore[call-overload]
    ids = torch.tensor(encode(stdlib_text(limit)), dtype=torch.long)
    windows = ids[: len(ids) // (seq_len + 1) * (seq_len + 1)].view(-1, seq_len + 1)
    return TensorDataset(windows[:, :-1].contiguous(), windows[:, 1:].contiguous())


def stdlib_text(limit: int) -> str:
    """The first ``limit`` characters of the stdlib's top-level modules, in sorted file order."""
    parts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        size += len(text)
        if size >= limit:
            break
    return "".join(parts)[:limit]


def encode(text: str) -> list[int]:
    return [_IDS.get(c, len(ALPHABET)) for c in text]


def build_model(hparams: dict[str, object]) -> nn.Module:
    """A GPT-style decoder: ``layers`` blocks of ``heads``-head causal attention, width ``dim``."""
    return CharLM(
        dim=int(hparams.get("dim", 64)),  # type: ignore[call-overload]
        heads=int(hparams.get("heads", 4)),  # type: ignore[call-overload]
        layers=int(hparams.get("layers", 2)),  # type: ignore[call-overload]
        seq_len=int(hparams.get("seq_len", 64)),  # type: ignore[call-overload]
    )


def tensor_parallel_plan(model: CharLM) -> dict[str, str]:
    """Per-module split for tensor parallelism; embeddings, norms and the head stay replicated."""
    plan = {}
    for i in range(len(model.blocks)):
        prefix = f"blocks.{i}"
        for name in ("attn.q", "attn.k", "attn.v", "mlp.fc"):
            plan[f"{prefix}.{name}"] = "colwise"
        for name in ("attn.proj", "mlp.proj"):
            plan[f"{prefix}.{name}"] = "rowwise"
    return plan


def fsdp_units(model: CharLM) -> list[nn.Module]:
    """One FSDP (and activation-checkpointing) unit per transformer block."""
    return list(model.blocks)


class CharLM(nn.Module):
    def __init__(self, dim: int, heads: int, layers: int, seq_len: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB_SIZE, dim)
        self.positions = nn.Embedding(seq_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, VOCAB_SIZE)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.tokens(ids) + self.positions(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Attention(nn.Module):
    """Causal self-attention with separate q, k, v projections, so that splitting them by output
    features gives each tensor-parallel rank whole heads."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        # -1 heads: under tensor parallelism this rank holds only its share of the heads.
        q, k, v = (
            p(x).view(batch, length, -1, self.head_dim).transpose(1, 2)
            for p in (self.q, self.k, self.v)
        )
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(batch, length, -1))


class MLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 4 * dim)
        self.proj = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))

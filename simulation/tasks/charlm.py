"""A tiny character-level GPT on the Python standard library's pydoc topics; no download.

The text is ``pydoc_data.topics.topics`` (79 help topics, about 465,000 characters). Topics
are dealt into three disjoint groups: a pretraining corpus, the clients' corpora (each client
holds its own topics: non-IID by construction) and held-out topics, the unseen tasks the
server evaluates on. The model is pretrained once, deterministically from a fixed seed, on
the pretraining topics and cached (see :func:`fedledger.simulation.cache.cache_dir`); federated tuning starts from it.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the PyTorch convention)

from ..cache import build_once, cache_dir
from .base import ClientData, Split, Task, TrainSettings

VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
"""Newline and printable ASCII (ids 1..96); every other character maps to :data:`UNKNOWN`."""
UNKNOWN = 0
CONTEXT = 64
HELD_OUT_TOPICS = 12
PRETRAIN_TOPICS = 27
VAL_FRACTION = 0.2
TEST_WINDOWS = 256
PROMPTS = 16
PROMPT_CHARS = 32
COMPLETION_CHARS = 32


class GPTConfig:
    """Shape of the tiny GPT (the defaults of the demo: 2 layers, width 128, context 64)."""

    def __init__(self, layers: int = 2, width: int = 128, heads: int = 4, context: int = CONTEXT) -> None:
        self.layers, self.width, self.heads, self.context = layers, width, heads, context
        self.vocab = len(VOCAB) + 1

    def key(self) -> str:
        """A name of the shape, for cache files."""
        return f"L{self.layers}-W{self.width}-H{self.heads}-C{self.context}-V{self.vocab}"


class _Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.heads = config.heads
        # "layernorm" in the names: MeZO's weight decay skips biases and layer norms by name.
        self.layernorm_1 = nn.LayerNorm(config.width)
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.proj = nn.Linear(config.width, config.width)
        self.layernorm_2 = nn.LayerNorm(config.width)
        self.mlp_in = nn.Linear(config.width, 4 * config.width)
        self.mlp_out = nn.Linear(4 * config.width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.layernorm_1(x)).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp_out(F.gelu(self.mlp_in(self.layernorm_2(x))))


class TinyGPT(nn.Module):
    """A decoder-only transformer over characters, output head tied to the token embedding."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.token = nn.Embedding(config.vocab, config.width)
        self.position = nn.Embedding(config.context, config.width)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.layers))
        self.layernorm_f = nn.LayerNorm(config.width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-character logits for every position of ``ids`` (batch x length)."""
        positions = torch.arange(ids.shape[1])
        x = self.token(ids) + self.position(positions)
        for block in self.blocks:
            x = block(x)
        return self.layernorm_f(x) @ self.token.weight.T


def encode(text: str) -> np.ndarray:
    """Character ids (unknown characters become :data:`UNKNOWN`)."""
    table = {ch: i + 1 for i, ch in enumerate(VOCAB)}
    return np.fromiter((table.get(ch, UNKNOWN) for ch in text), dtype=np.int64, count=len(text))


def decode(ids: Sequence[int]) -> str:
    """The text of character ids (unknown ones as '?')."""
    return "".join(VOCAB[i - 1] if i > 0 else "?" for i in ids)


@functools.cache
def topic_groups() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(pretraining, client, held-out) topic names: a fixed deal of the sorted topics."""
    from pydoc_data.topics import topics

    names = sorted(topics)
    order = np.random.default_rng(20231211).permutation(len(names))
    dealt = [names[i] for i in order]
    held_out = tuple(sorted(dealt[:HELD_OUT_TOPICS]))
    pretrain = tuple(sorted(dealt[HELD_OUT_TOPICS : HELD_OUT_TOPICS + PRETRAIN_TOPICS]))
    clients = tuple(sorted(dealt[HELD_OUT_TOPICS + PRETRAIN_TOPICS :]))
    return pretrain, clients, held_out


def windows(text: str, context: int = CONTEXT) -> np.ndarray:
    """Non-overlapping windows of ``context + 1`` character ids (input plus shifted target)."""
    ids = encode(text)
    count = (len(ids) - 1) // context
    return (
        np.stack([ids[i * context : i * context + context + 1] for i in range(count)])
        if count
        else np.zeros((0, context + 1), dtype=np.int64)
    )


def _split(rows: np.ndarray) -> Split:
    return Split(rows[:, :-1].copy(), rows[:, 1:].copy())


@functools.cache
def _topic_text(names: tuple[str, ...]) -> str:
    from pydoc_data.topics import topics

    return "\n".join(topics[name] for name in names)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) * len(b)))."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """Rouge-L F1 over whitespace-separated words (Lin 2004, beta = 1)."""
    c, r = candidate.split(), reference.split()
    if not c or not r:
        return 0.0
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


@torch.no_grad()
def greedy(model: TinyGPT, prompts: np.ndarray, length: int) -> np.ndarray:
    """Greedy continuations of ``length`` characters for a batch of equal-length prompts."""
    ids = torch.from_numpy(prompts)
    for _ in range(length):
        logits = model(ids[:, -model.config.context :])[:, -1]
        ids = torch.cat([ids, logits.argmax(dim=1, keepdim=True)], dim=1)
    return ids[:, prompts.shape[1] :].numpy()


def mean_loss(model: nn.Module, data: Split, batch_size: int = 64) -> float:
    """Mean next-character cross-entropy over ``data``."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = torch.from_numpy(data.x[start : start + batch_size])
            y = torch.from_numpy(data.y[start : start + batch_size])
            logits = model(x)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    return total / max(count, 1)


class CharLMTask(Task):
    """Next-character prediction; clients fine-tune a pretrained tiny GPT on their own pydoc topics."""

    name = "charlm"
    num_classes = len(VOCAB) + 1

    def __init__(self, config: GPTConfig | None = None, pretrain_steps: int = 600, pretrain_seed: int = 0) -> None:
        """The demo's model shape and pretraining budget (cached per shape, budget and seed)."""
        self.config = config or GPTConfig()
        self.pretrain_steps = pretrain_steps
        self.pretrain_seed = pretrain_seed

    # ------------------------------------------------------------- pretraining

    def _cache_file(self) -> Path:
        key = f"charlm-{self.config.key()}-S{self.pretrain_steps}-seed{self.pretrain_seed}"
        return cache_dir() / f"{key}.pt"

    def prepare(self) -> dict[str, float]:
        """Pretrain once (concurrent processes wait for the first, :func:`build_once`); the run's facts."""
        path = self._cache_file()
        meta = path.with_suffix(".json")

        def pretrain(tmp: Path) -> None:
            started = time.monotonic()
            model, loss = self._pretrain()
            seconds = round(time.monotonic() - started, 1)
            info = {"seconds": seconds, "final_train_loss": loss, "steps": self.pretrain_steps}
            meta.write_text(json.dumps(info), encoding="utf-8")  # before the weights: they mark completion
            torch.save(model.state_dict(), tmp)

        build_once(path, pretrain)
        return json.loads(meta.read_text(encoding="utf-8"))

    def _pretrain(self) -> tuple[TinyGPT, float]:
        """Adam on random windows of the pretraining topics, deterministic for the seed."""
        torch.manual_seed(self.pretrain_seed)
        model = TinyGPT(self.config)
        pretrain, _, _ = topic_groups()
        ids = torch.from_numpy(encode(_topic_text(pretrain)))
        generator = torch.Generator().manual_seed(self.pretrain_seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=self.pretrain_steps)
        context = self.config.context
        loss_value = float("nan")
        model.train()
        for _ in range(self.pretrain_steps):
            starts = torch.randint(0, len(ids) - context - 1, (32,), generator=generator)
            batch = torch.stack([ids[s : s + context + 1] for s in starts.tolist()])
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_value = loss.item()
        model.eval()
        return model, round(loss_value, 4)

    # ------------------------------------------------------------------- Task

    def build_model(self, seed: int) -> torch.nn.Module:
        """The pretrained model (the run seed does not change it: every run tunes the same base)."""
        if not self._cache_file().is_file():  # no lock or JSON read once cached
            self.prepare()
        model = TinyGPT(self.config)
        model.load_state_dict(_load_state(str(self._cache_file())))
        model.eval()
        return model

    def client_data(self, partition_id: int, num_partitions: int, partitioning: str, seed: int) -> ClientData:
        """Client ``partition_id``'s topics (dealt round-robin), 20 % of its windows kept for voting.

        Only topic partitioning exists for text: ``iid`` and ``dirichlet:*`` both mean "own topics".
        """
        if not 0 <= partition_id < num_partitions:
            raise ValueError(f"partition {partition_id} out of range for {num_partitions} partitions")
        rows = windows(self._client_text(partition_id, num_partitions), self.config.context)
        rows = rows[np.random.default_rng(seed + 1_000 + partition_id).permutation(len(rows))]
        n_val = max(1, int(VAL_FRACTION * len(rows)))
        return ClientData(_split(rows[n_val:]), _split(rows[:n_val]))

    def test_data(self, seed: int) -> Split:
        """Up to 256 windows of the held-out text (the unseen tasks)."""
        rows = windows(self._held_out_text(), self.config.context)
        picked = np.random.default_rng(7).permutation(len(rows))[:TEST_WINDOWS]
        return _split(rows[np.sort(picked)])

    def _client_text(self, partition_id: int, num_partitions: int) -> str:
        """Client ``partition_id``'s topics, dealt round-robin."""
        _, clients, _ = topic_groups()
        if num_partitions > len(clients):
            raise ValueError(f"the charlm task has {len(clients)} client topics, too few for {num_partitions} clients")
        return _topic_text(tuple(name for i, name in enumerate(clients) if i % num_partitions == partition_id))

    def _held_out_text(self) -> str:
        return _topic_text(topic_groups()[2])

    def fit(self, model: torch.nn.Module, data: Split, settings: TrainSettings) -> dict[str, float]:
        """First-order fine-tuning (for FedAvg on this task): SGD over shuffled windows."""
        generator = torch.Generator().manual_seed(settings.seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr)
        x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
        total, batches = 0.0, 0
        for _ in range(settings.local_epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                logits = model(x[batch])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[batch].reshape(-1))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item()
                batches += 1
        model.eval()
        return {"train_loss": total / max(batches, 1)}

    def evaluate(self, model: torch.nn.Module, data: Split) -> dict[str, float]:
        """Loss and next-character accuracy on ``data``; on the test set also Rouge-L of greedy completions."""
        model.eval()
        loss = mean_loss(model, data)
        with torch.no_grad():
            predicted = model(torch.from_numpy(data.x[:TEST_WINDOWS])).argmax(dim=-1).numpy()
        metrics = {
            "loss": loss,
            "accuracy": float((predicted == data.y[:TEST_WINDOWS]).mean()),
            "perplexity": math.exp(loss),
        }
        if len(data) >= PROMPTS and data.x.shape[1] >= PROMPT_CHARS + COMPLETION_CHARS:
            metrics["rouge_l"] = self.rouge(model, data)
        return metrics

    def rouge(self, model: torch.nn.Module, data: Split) -> float:
        """Mean Rouge-L of greedy completions of the first 16 windows (32-character prompt, 32 to complete)."""
        prompts = data.x[:PROMPTS, :PROMPT_CHARS]
        references = data.x[:PROMPTS, PROMPT_CHARS : PROMPT_CHARS + COMPLETION_CHARS]
        completions = greedy(model, prompts, COMPLETION_CHARS)  # type: ignore[arg-type]
        scores = [rouge_l(decode(c), decode(r)) for c, r in zip(completions, references, strict=True)]
        return float(np.mean(scores))


@functools.cache
def _load_state(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


CODE_MODULES = (
    "argparse", "ast", "base64", "bdb", "calendar", "codecs", "compileall", "configparser", "contextlib",
    "dataclasses", "datetime", "difflib", "dis", "doctest", "enum", "fractions", "ftplib", "functools",
    "gettext", "gzip", "heapq", "imaplib", "ipaddress", "locale", "mailbox", "mimetypes", "modulefinder",
    "optparse", "pdb", "pickle", "pickletools", "pkgutil", "platform", "plistlib", "pprint", "profile",
)  # fmt: skip
"""Pure-Python standard-library modules present in CPython 3.11 to 3.13: the ``charcode`` domain."""
HELD_OUT_MODULES = 6
MODULE_CHARS = 40_000
"""Characters read from the start of each module (so that no client's share dwarfs another's)."""


@functools.cache
def _module_text(names: tuple[str, ...]) -> str:
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for name in names:
        path = root / f"{name}.py"
        if not path.is_file():
            raise ValueError(f"the charcode task reads the standard library's Python sources; {path} is missing")
        parts.append(path.read_text(encoding="utf-8", errors="replace")[:MODULE_CHARS])
    return "\n".join(parts)


class CharCodeTask(CharLMTask):
    """Domain adaptation: the char-GPT pretrained on pydoc's prose, tuned on Python source code.

    The target domain is the standard library's own code (:data:`CODE_MODULES`, the first
    :data:`MODULE_CHARS` characters of each): the last :data:`HELD_OUT_MODULES` modules are held
    out for the test set, the others dealt round-robin to the clients (each client its own
    modules: non-IID). The model and its pretraining are ``charlm``'s (one cached base).
    """

    name = "charcode"

    @staticmethod
    def modules_of(partition_id: int, num_partitions: int) -> tuple[str, ...]:
        """The modules dealt to client ``partition_id`` (round-robin over the non-held-out ones)."""
        modules = CODE_MODULES[:-HELD_OUT_MODULES]
        if num_partitions > len(modules):
            raise ValueError(f"the charcode task has {len(modules)} client modules, too few for {num_partitions}")
        return tuple(name for i, name in enumerate(modules) if i % num_partitions == partition_id)

    def _client_text(self, partition_id: int, num_partitions: int) -> str:
        return _module_text(self.modules_of(partition_id, num_partitions))

    def _held_out_text(self) -> str:
        return _module_text(CODE_MODULES[-HELD_OUT_MODULES:])

"""Why a checkpoint does not fit a model, said in modules rather than in key names.

:func:`key_diff` compares a model's state_dict with a checkpoint's; :func:`mismatch_message` turns the difference
into one line. Where the two share most keys (a near miss: a sibling layout of the same network), the missing and
unexpected keys are grouped into the modules that differ (``sp (20 keys), ffm.conv, ffm.bn (4 keys)``); where they
share little, the first keys are named as they are. The hint names the registered model whose layout the checkpoint
does fit, if any (each model is built on the ``meta`` device for that: no memory, no weights); it asks to check
``--num-classes`` only where the class count may be what is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)

_SHOW = 5  # how many keys (or modules) of each kind a message names


@dataclass
class KeyDiff:
    """How a checkpoint's keys and shapes differ from a model's."""

    missing: list[str] = field(default_factory=list)  # the model's, absent from the checkpoint (BN counters aside)
    unexpected: list[str] = field(default_factory=list)  # the checkpoint's, absent from the model and not skipped
    misshaped: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint shape, model shape)
    skipped: list[str] = field(default_factory=list)  # the checkpoint's, under the model's ignored prefixes
    matched: int = 0  # keys in both with the same shape


def key_diff(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], ignored=()) -> KeyDiff:
    d = KeyDiff()
    d.skipped = [k for k in state if k not in own and k.startswith(tuple(ignored))]
    d.unexpected = [k for k in state if k not in own and k not in d.skipped]
    d.missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    for k, v in own.items():
        if k in state:
            if tuple(state[k].shape) != tuple(v.shape):
                d.misshaped.append((k, tuple(state[k].shape), tuple(v.shape)))
            else:
                d.matched += 1
    return d


def mismatch_message(name: str, source: str, model, state: Mapping[str, torch.Tensor], diff: KeyDiff) -> str:
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    near = 2 * diff.matched >= len(own)  # a sibling layout: say which modules differ
    parts = []
    for label, keys, universe in (("missing", diff.missing, own), ("unexpected", diff.unexpected, state)):
        if keys:
            shown = _modules(keys, universe) if near else keys
            more = f" (+{len(shown) - _SHOW} more)" if len(shown) > _SHOW else ""
            parts.append(f"{len(keys)} {label}: {', '.join(shown[:_SHOW])}{more}")
    if diff.misshaped:
        shown = [f"{k} {c} vs {o}" for k, c, o in diff.misshaped]
        more = f" (+{len(shown) - _SHOW} more)" if len(shown) > _SHOW else ""
        parts.append(f"{len(shown)} mis-shaped: {', '.join(shown[:_SHOW])}{more}")
    return f"checkpoint {source} does not fit {name}: {'; '.join(parts)}; {_hint(model, state, diff)}"


def _modules(keys: list[str], universe) -> list[str]:
    """``keys`` as the widest modules all of whose keys (in ``universe``) are among them; the rest as keys."""
    total: dict[str, int] = {}
    chosen: dict[str, int] = {}
    for counts, names in ((total, universe), (chosen, keys)):
        for k in names:
            if not k.endswith("num_batches_tracked"):
                for prefix in _prefixes(k):
                    counts[prefix] = counts.get(prefix, 0) + 1
    out: list[str] = []
    for key in keys:
        whole = next((p for p in _prefixes(key) if chosen.get(p) == total.get(p)), None)
        label = key if whole is None else whole + (f" ({total[whole]} keys)" if total[whole] > 1 else "")
        if label not in out:
            out.append(label)
    return out


def _prefixes(key: str) -> list[str]:
    """The modules a key lies in, widest first: ``a.b.weight`` -> ``a``, ``a.b``."""
    parts = key.split(".")
    return [".".join(parts[:depth]) for depth in range(1, len(parts))]


def _hint(model, state, diff: KeyDiff) -> str:
    nc = getattr(model, "num_classes", None)
    if diff.misshaped and not diff.missing and nc:
        return f"the model was built with num_classes={nc}; check --num-classes"
    fits = _registered_fits(state, getattr(model, "model_name", "")) if diff.missing or diff.unexpected else []
    if len(fits) == 1:
        name, layout, classes = fits[0]
        return f"its keys are laid out as in {layout}: use --model {name}{classes}"
    if fits:
        return "its keys fit " + " or ".join(f"--model {name}{classes}" for name, _, classes in fits)
    return "check --model" if _class_count_fits(model.state_dict(), state, nc) else "check --model and --num-classes"


def _class_count_fits(own, state, nc) -> bool:
    """The model's classifier (its convs with ``nc`` outputs) is in the checkpoint with the same shapes."""
    heads = [k for k, v in own.items() if v.ndim == 4 and nc and v.shape[0] == nc]
    return bool(heads) and all(k in state and tuple(state[k].shape) == tuple(own[k].shape) for k in heads)


def _registered_fits(state, exclude: str) -> list[tuple[str, str, str]]:
    """(name, checkpoint layout, ``" --num-classes N"`` or "") of each registered model the checkpoint fits."""
    from .registry import list_models, model_info

    found = []
    for name in list_models():
        info = model_info(name)
        if name == exclude:
            continue
        try:
            with torch.device("meta"):
                candidate = info.builder(num_classes=info.default_num_classes)
            adapted = candidate.adapt_checkpoint(state) if hasattr(candidate, "adapt_checkpoint") else state
        except Exception as exc:  # noqa: BLE001 - a model that cannot even take these keys is no suggestion
            log.debug("%s not compared with the checkpoint: %s", name, exc)
            continue
        d = key_diff(candidate.state_dict(), adapted, candidate.ignored_checkpoint_prefixes)
        if d.missing or d.unexpected:
            continue
        counts = {c if o == info.default_num_classes else None
                  for _, cs, os_ in d.misshaped for c, o in zip(cs, os_) if c != o}
        if not d.misshaped:
            found.append((name, info.checkpoint_layout, ""))
        elif len(counts) == 1 and None not in counts:  # only the class count differs
            found.append((name, info.checkpoint_layout, f" --num-classes {counts.pop()}"))
    return found

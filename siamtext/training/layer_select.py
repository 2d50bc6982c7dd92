"""Layer reduction: which of a teacher's transformer layers a student keeps, and the cut.

A layer-reduced student starts as a copy of its teacher with only some of the layers kept,
in their order (the layer-reduction example of sentence-transformers, and Sanh et al.'s
DistilBERT, which initialise a smaller student from every other teacher layer): the
embeddings, the kept layers' weights and the pooling are the teacher's, so the student
starts close to the teacher and distillation only has to close the gap the missing layers
leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from torch import nn

#: Where the layer list lives, by attribute path: BERT, RoBERTa, XLM-R, ELECTRA, MPNet,
#: DeBERTa (``encoder.layer``), DistilBERT (``transformer.layer``), ModernBERT and other
#: decoder-style stacks (``layers``, ``encoder.layers``).
LAYER_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers")
#: The config field that counts the layers, by family.
LAYER_COUNT_FIELDS = ("num_hidden_layers", "n_layers", "num_layers")


def spread_layers(total: int, count: int) -> list[int]:
    """``count`` layer indices spread evenly over ``total`` layers, first and last included.

    Index ``i`` of ``count`` is ``i * (total - 1) / (count - 1)`` rounded half to even (the
    rounding of ``numpy.linspace(...).round()``): 3 of 6 gives ``[0, 2, 5]``, 4 of 6
    ``[0, 2, 3, 5]``, 4 of 12 ``[0, 4, 7, 11]``, 2 of 6 ``[0, 5]``. One layer keeps the
    first, whose input is what the embeddings give.

    Args:
        total: The teacher's number of layers (>= 1).
        count: How many to keep, ``1 <= count <= total``.

    Returns:
        Increasing indices in ``[0, total)``.
    """
    if count == 1:
        return [0]
    return [round(Fraction(i * (total - 1), count - 1)) for i in range(count)]


def check_layers(layers: int | Sequence[int], total: int, name: str = "layers") -> list[int]:
    """The kept layer indices from a count (spread by :func:`spread_layers`) or explicit
    indices, checked against the teacher's ``total`` layers.

    Raises:
        TypeError: For anything but an int or a sequence of ints (bools are refused).
        ValueError: For a count outside ``[1, total]``; an empty list; an index outside
            ``[0, total)``; an index given twice; indices out of increasing order.
    """
    if isinstance(layers, bool):
        raise TypeError(f"{name} must be a layer count (int) or a list of layer indices, "
                        f"got {layers!r}")
    if isinstance(layers, int):
        if not 1 <= layers <= total:
            raise ValueError(f"{name}={layers}: the teacher has {total} layers, so a student "
                             f"keeps between 1 and {total} of them")
        return spread_layers(total, layers)
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(f"{name} must be a layer count (int) or a list of layer indices, "
                        f"got {type(layers).__name__}: {layers!r:.60}")
    indices = list(layers)
    if not indices:
        raise ValueError(f"{name} is an empty list; keep at least one of the teacher's "
                         f"{total} layers")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"{name} must hold layer indices (ints), got {i!r} in {indices}")
    bad = [i for i in indices if not 0 <= i < total]
    if bad:
        raise ValueError(f"{name}={indices}: indices {bad} are out of range; the teacher has "
                         f"{total} layers, indexed 0 to {total - 1}")
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    if repeated:
        raise ValueError(f"{name}={indices}: indices {repeated} are given more than once; "
                         "each teacher layer can be kept once")
    if indices != sorted(indices):
        raise ValueError(f"{name}={indices}: indices must be in increasing order (the "
                         f"student runs the kept layers in the teacher's order), e.g. "
                         f"{sorted(indices)}")
    return indices


def _attribute(module: nn.Module, path: str) -> object | None:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def layer_stack(transformer: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The module holding the transformer's layer list, the list's attribute name and the list.

    Raises:
        ValueError: For a model whose layers are not one plain ``nn.ModuleList`` at a known
            place (ALBERT shares one layer's weights across depths; T5 keeps its relative
            position bias in the first block only), naming the model type.
    """
    for path in LAYER_PATHS:
        stack = _attribute(transformer, path)
        if isinstance(stack, nn.ModuleList) and len(stack):
            parent_path, _, attr = path.rpartition(".")
            parent = _attribute(transformer, parent_path) if parent_path else transformer
            return parent, attr, stack  # type: ignore[return-value]
    model_type = getattr(getattr(transformer, "config", None), "model_type", "?")
    raise ValueError(f"cannot reduce the layers of a {model_type!r} transformer: no layer list "
                     f"at any of {list(LAYER_PATHS)} (supported: BERT-like encoders, "
                     "DistilBERT, ModernBERT; not ALBERT, whose layers share weights, nor T5)")


def count_layers(transformer: nn.Module) -> int:
    """The number of layers of ``transformer`` (see :func:`layer_stack`)."""
    return len(layer_stack(transformer)[2])


def cut_layers(transformer: nn.Module, indices: Sequence[int]) -> None:
    """Keep only the layers ``indices`` of ``transformer``, in place, in that order.

    The config's layer count is set to match, so ``save_pretrained`` writes a folder that
    loads as the smaller model, and each kept layer's ``layer_idx`` (the cache position
    transformers gives attention modules) is renumbered to its new depth.
    """
    parent, attr, stack = layer_stack(transformer)
    kept = nn.ModuleList([stack[i] for i in indices])
    setattr(parent, attr, kept)
    config = transformer.config
    for field in LAYER_COUNT_FIELDS:
        if isinstance(getattr(config, field, None), int):
            setattr(config, field, len(kept))
    layer_types = getattr(config, "layer_types", None)  # per-layer settings (ModernBERT)
    if isinstance(layer_types, list) and len(layer_types) == len(stack):
        config.layer_types = [layer_types[i] for i in indices]
    for depth, layer in enumerate(kept):
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = depth

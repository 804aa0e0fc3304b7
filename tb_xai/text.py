"""Which probe inputs are text, and how their token ids are read: decided once, when the model is known.

A probe input is text when it holds one integer token id per position (probes, positions) and feeds an
Embedding layer: changing its ids changes what an Embedding layer call of the model looks up. The call is
found by observing the model's layer calls (through nested, functional and subclassed models, as
`tb_xai.backend.keras_model` discovers layers), or named with `embedding_layer=`. Gradient methods attribute a
text input at that call's output; perturbation methods replace its tokens by `mask_id`.

keras_hub-style dict inputs (``token_ids``, ``padding_mask``, ``segment_ids``): ``token_ids`` is the text, the
other two are held: they follow it and are never explained; a ``padding_mask``'s zeros mark padding.

Example:
    >>> cb = tb_xai.AttributionCallback("runs/text", vectorize(texts), vocabulary=vectorize,
    ...                                 methods=["integrated_gradients"])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from tb_xai.probe import ProbeSet, TextInput

#: dict probe keys keras_hub backbones take: the token ids, and the inputs held with them.
TOKEN_IDS = "token_ids"
PADDING_MASK = "padding_mask"
HELD_INPUTS = (PADDING_MASK, "segment_ids")
#: probe rows the discovery runs the model on (eagerly, twice per candidate input).
DISCOVERY_ROWS = 8

VocabularyLike = Union[Sequence[str], Any, Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class TextArguments:
    """The callback's text arguments, validated (see `check_arguments`)."""

    vocabulary: Any = None
    embedding_layer: Any = None
    padding_id: Optional[int] = 0
    mask_id: Optional[int] = None


def check_arguments(vocabulary=None, embedding_layer=None, padding_id: Optional[int] = 0,
                    mask_id: Optional[int] = None) -> TextArguments:
    """Validates what can be validated before the model is known; TypeError/ValueError naming the value."""
    for value, what in ((padding_id, "padding_id"), (mask_id, "mask_id")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise ValueError(f"{what} must be None or a token id (an integer >= 0); received: {value!r}")
    if padding_id is None and mask_id is None:
        raise ValueError(
            "padding_id=None (no id marks padding) needs mask_id=: the token id a perturbation method puts in place "
            "of a removed token (an [UNK] or [MASK] id)"
        )
    if embedding_layer is not None and not isinstance(embedding_layer, str) and not hasattr(embedding_layer, "call"):
        raise TypeError(
            f"embedding_layer must be a layer name, a path 'outer/inner' or a Keras layer; received: {embedding_layer!r}"
        )
    if isinstance(vocabulary, Mapping):
        vocabulary = {str(k): _vocabulary_strings(v, f"vocabulary[{k!r}]") for k, v in vocabulary.items()}
    elif vocabulary is not None:
        vocabulary = _vocabulary_strings(vocabulary, "vocabulary")
    return TextArguments(vocabulary, embedding_layer, None if padding_id is None else int(padding_id),
                         None if mask_id is None else int(mask_id))


def _vocabulary_strings(vocabulary, what: str) -> Tuple[str, ...]:
    if hasattr(vocabulary, "get_vocabulary"):
        try:
            vocabulary = vocabulary.get_vocabulary()
        except Exception as error:  # an un-adapted TextVectorization, a tokenizer without its vocabulary
            raise ValueError(f"{what}.get_vocabulary() failed: {type(error).__name__}: {error}") from error
    if isinstance(vocabulary, (str, bytes)) or not isinstance(vocabulary, (list, tuple, np.ndarray)):
        raise TypeError(
            f"{what} must be a list of token strings (index = token id) or an object with get_vocabulary() such as "
            f"a TextVectorization layer; received: {type(vocabulary).__name__}"
        )
    strings = []
    for i, token in enumerate(list(vocabulary)):
        if isinstance(token, bytes):
            token = token.decode("utf-8", errors="replace")
        if not isinstance(token, str):
            raise TypeError(f"{what}[{i}] is {token!r} ({type(token).__name__}); expected a token string")
        strings.append(token)
    if not strings:
        raise ValueError(f"{what} is empty; expected one token string per token id")
    return tuple(strings)


def resolve(adapter, probe: ProbeSet, arguments: TextArguments = TextArguments()) -> None:
    """Decides the text and held inputs of `probe` on the model `adapter` wraps, and fills `probe.text` /
    `probe.held` on `probe` and on `adapter.probe` (the cast probe the methods see); records each text input's
    Embedding layer call in `adapter.text_calls`. ValueError naming the value on a configuration mistake."""
    names = list(adapter.probe.names)
    held: Tuple[str, ...] = ()
    if adapter.probe.structure == "dict" and TOKEN_IDS in names:
        held = tuple(n for n in HELD_INPUTS if n in names)
    candidates = [i for i, name in enumerate(names) if name not in held and _token_like(adapter.probe.inputs[i])]
    named = adapter.find_layer(arguments.embedding_layer) if arguments.embedding_layer is not None else None
    fed = _embedding_calls_fed(adapter, candidates, named)
    text: Dict[str, TextInput] = {}
    calls = {}
    for i in candidates:
        name = names[i]
        mine = fed.get(i, [])
        if named is not None:  # an input that feeds the named layer is explained there
            mine = [c for c in mine if c.layer is named.layer] or mine
        if not mine:
            continue
        if len(mine) > 1:
            raise ValueError(
                f"probe input {name!r} feeds {len(mine)} Embedding layer calls {[c.path for c in mine]}; name the one "
                "its tokens are explained at with embedding_layer="
            )
        call = mine[0]
        calls[name] = call
        text[name] = _text_input(adapter, i, call, arguments, held)
    if named is not None and not any(c.layer is named.layer for c in calls.values()):
        ints = [names[i] for i in candidates]
        raise ValueError(
            f"embedding_layer {arguments.embedding_layer!r} ({named.path}) is not fed by a token input: its input "
            f"does not change when the token ids of {ints or 'any probe input (none holds integer ids)'} change"
        )
    if not text and arguments.vocabulary is not None:
        raise ValueError(
            "vocabulary= was given but no probe input is text: a text input holds integer token ids, shaped "
            f"(probes, positions), that feed an Embedding layer; the probe inputs have shapes "
            f"{[a.shape for a in adapter.probe.inputs]} and dtypes {[str(a.dtype) for a in adapter.probe.inputs]}"
        )
    if isinstance(arguments.vocabulary, Mapping):
        unknown = sorted(set(arguments.vocabulary) - set(text))
        if unknown:
            raise ValueError(f"vocabulary names inputs {unknown} that are not text inputs; the text inputs are "
                             f"{sorted(text)}")
    if held and TOKEN_IDS not in text:
        raise ValueError(
            f"the probe's {TOKEN_IDS!r} input does not feed an Embedding layer of the model, so {list(held)} have no "
            "text input to follow; name the token embedding with embedding_layer="
        )
    for target in (probe, adapter.probe):
        target.text = dict(text)
        target.held = held if text else ()
    adapter.text_calls = calls


def _token_like(array: np.ndarray) -> bool:
    """(probes, positions) of integers, or of floats that an Embedding would cast (checked later)."""
    return array.ndim == 2 and (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating))


def _embedding_calls_fed(adapter, candidates: List[int], named) -> Dict[int, list]:
    """For each candidate input, the Embedding layer calls (and `named`'s) whose input changes with its ids."""
    if not candidates:
        return {}
    watched = {id(c.layer): c.layer for c in adapter.layer_calls if isinstance(c.layer, adapter.embedding_types)}
    if named is not None:
        watched[id(named.layer)] = named.layer
    if not watched:
        return {}
    rows = [a[:DISCOVERY_ROWS] for a in adapter.probe.inputs]
    sizes = [int(getattr(layer, "input_dim", 0) or 0) for layer in watched.values()]
    vocabulary = min([s for s in sizes if s > 1], default=2)
    base = _embedding_inputs(adapter, watched, rows)
    fed: Dict[int, list] = {}
    for i in candidates:
        changed = list(rows)
        # Another in-range id at every position: every lookup fed by these ids sees different ids.
        ids = np.asarray(rows[i])
        changed[i] = ((np.round(ids).astype(np.int64) + 1) % vocabulary).astype(ids.dtype)
        after = _embedding_inputs(adapter, watched, changed)
        for key, value in base.items():
            other = after.get(key)
            if other is not None and (other.shape != value.shape or not np.array_equal(other, value)):
                layer, index = key
                call = next((c for c in adapter.layer_calls if c.layer is watched[layer] and c.index == index), None)
                if call is not None:
                    fed.setdefault(i, []).append(call)
    return fed


def _embedding_inputs(adapter, watched: Dict[int, Any], rows: Sequence[np.ndarray]) -> Dict[Tuple[int, int], np.ndarray]:
    """(layer id, call index) -> the ids that call looked up, in one eager forward pass on `rows`."""
    from tb_xai.backend.keras_model import _patched_calls

    seen: Dict[Tuple[int, int], np.ndarray] = {}
    counts: Dict[int, int] = {}

    def observed(layer, original):
        def call(*args, **kwargs):
            value = args[0] if args else kwargs.get("inputs")
            index = counts.get(id(layer), 0)
            counts[id(layer)] = index + 1
            try:
                ids = seen[(id(layer), index)] = np.asarray(_to_numpy(value))
            except Exception:  # a symbolic call (a tf_keras Sequential rebuilding itself): not a lookup to compare
                ids = None
            size = getattr(layer, "input_dim", None)
            if ids is not None and ids.size and size and (ids.max() >= size or ids.min() < 0):
                # Said below, by input and position, instead of the backend's own gather error.
                out_of_range.append((layer, int(size)))
                import keras

                args = (keras.ops.clip(value, 0, int(size) - 1),) + tuple(args[1:]) if args else args
                kwargs = {k: keras.ops.clip(v, 0, int(size) - 1) if k == "inputs" else v for k, v in kwargs.items()}
            return original(*args, **kwargs)

        return call

    out_of_range: List[Tuple[Any, int]] = []
    with _patched_calls({k: (layer, observed) for k, layer in watched.items()}):
        adapter.model(adapter.probe.structured(list(rows)), training=False)
    for layer, size in out_of_range[:1]:
        for name, ids in zip(adapter.probe.names, rows):
            ids = np.asarray(ids)
            if ids.ndim == 2 and (ids.max() >= size or ids.min() < 0):
                at = np.unravel_index(int(np.argmax((ids >= size) | (ids < 0))), ids.shape)
                raise ValueError(
                    f"probe input {name!r} holds token id {ids[at].item()!r} (probe {at[0]}, position {at[1]}) but "
                    f"Embedding layer {layer.name!r} has input_dim={size}: ids must be in [0, {size})")
        raise ValueError(f"Embedding layer {layer.name!r} (input_dim={size}) is given ids outside [0, {size}) when "
                         "the model runs on the probe")
    return seen


def _to_numpy(value):
    import keras

    if hasattr(value, "numpy") and not hasattr(value, "detach"):
        return value.numpy()
    return keras.ops.convert_to_numpy(value)


def _text_input(adapter, i: int, call, arguments: TextArguments, held: Tuple[str, ...]) -> TextInput:
    name = adapter.probe.names[i]
    ids = adapter.probe.inputs[i]
    positions = ids.shape[1]
    if call.shape is None or len(call.shape) != 3 or call.shape[1] != positions:
        raise ValueError(
            f"layer {call.path!r} ({call.kind}) outputs shape {call.shape} but probe input {name!r} has {positions} "
            f"token positions; the embedding layer of a text input looks its tokens up: it outputs (rows, "
            f"{positions}, embedding dim), one embedding per token"
        )
    if np.issubdtype(ids.dtype, np.floating):
        fractional = np.flatnonzero(ids.reshape(-1) != np.round(ids.reshape(-1)))
        if fractional.size:
            at = np.unravel_index(fractional[0], ids.shape)
            raise ValueError(
                f"probe input {name!r} feeds Embedding layer {call.path!r} but holds {fractional.size} non-integer "
                f"value(s) (e.g. {ids[at].item()!r} at probe {at[0]}, position {at[1]}); token ids must be whole numbers"
            )
    if ids.min() < 0:
        at = np.unravel_index(int(np.argmin(ids)), ids.shape)
        raise ValueError(f"probe input {name!r} holds the negative token id {ids[at].item()!r} at probe {at[0]}, position "
                         f"{at[1]}; token ids are >= 0")
    input_dim = getattr(call.layer, "input_dim", None)
    largest = int(ids.max())
    if input_dim is not None and largest >= int(input_dim):
        at = np.unravel_index(int(np.argmax(ids)), ids.shape)
        raise ValueError(
            f"probe input {name!r} holds token id {largest} (probe {at[0]}, position {at[1]}) but Embedding layer "
            f"{call.path!r} has input_dim={input_dim}: ids must be in [0, {input_dim})"
        )
    padding_id, mask_id = arguments.padding_id, arguments.mask_id
    if getattr(call.layer, "mask_zero", False) and padding_id != 0:
        raise ValueError(
            f"Embedding layer {call.path!r} has mask_zero=True, so id 0 is its padding; received padding_id="
            f"{padding_id!r}. Leave padding_id at 0"
        )
    if mask_id is None:
        mask_id = padding_id
    for value, what in ((padding_id, "padding_id"), (mask_id, "mask_id")):
        if value is not None and input_dim is not None and value >= int(input_dim):
            raise ValueError(f"{what}={value} is not an id of Embedding layer {call.path!r} (input_dim={input_dim})")
    vocabulary = arguments.vocabulary
    if isinstance(vocabulary, Mapping):
        vocabulary = vocabulary.get(name)
    if vocabulary is not None and largest >= len(vocabulary):
        raise ValueError(
            f"the vocabulary has {len(vocabulary)} tokens but probe input {name!r} holds token id {largest}; expected "
            "a vocabulary with a string for every id (index = token id), e.g. vectorize.get_vocabulary()"
        )
    padding_input = PADDING_MASK if name == TOKEN_IDS and PADDING_MASK in held else None
    return TextInput(padding_id=padding_id, mask_id=int(mask_id), padding_input=padding_input,
                     vocabulary=vocabulary, embedding=call.path)


def check_removal(adapter, probe: ProbeSet, method: str) -> None:
    """ValueError when the model's output is not finite on a probe text whose tokens are all removed (set to the
    mask id), which a perturbation method evaluates: a ``mask_zero=True`` Embedding followed by a masked mean
    divides by zero there when the mask id is the padding id."""
    for i, name in enumerate(probe.names):
        text = probe.text.get(name)
        if text is None:
            continue
        ids = probe.inputs[i]
        removed = np.where(probe.padding(i), ids, np.asarray(text.mask_id, dtype=ids.dtype))
        inputs = list(probe.inputs)
        inputs[i] = removed
        outputs = adapter.predict(inputs)
        bad = np.flatnonzero(~np.isfinite(outputs).all(axis=1))
        if bad.size:
            raise ValueError(
                f"{method}: with every token of text input {name!r} replaced by the mask id {text.mask_id}, the "
                f"model's output is NaN or inf for {bad.size} of {len(ids)} probes (probe {int(bad[0])} first), so "
                "no removal could be explained. A mask_zero=True Embedding followed by a masked mean divides by "
                "zero when every position is masked: pass mask_id= a token id the model reads as a real token, "
                "e.g. the out-of-vocabulary id (1 for TextVectorization's '[UNK]')."
            )

"""Dilated convolutions as TensorFlow writes them, imported as one dilated ember.conv.

For a dilated convolution (Keras' Conv1D with dilation_rate, depthwise convolutions with a
rate) TensorFlow moves space into batch, runs a plain VALID stride-1 convolution, and moves
the batch back into space:

    SpaceToBatchND(x, block, paddings) [-> ExpandDims] -> Conv2D or DepthwiseConv2dNative
    [-> Squeeze] -> BatchToSpaceND(block, crops)

That is one convolution of x with dilation `block`, padded by `paddings`, its output
cropped by `crops` (a crop within the padding is taken off the padding instead). The
converters note, for each value made from a SpaceToBatchND, how to redo its chain on the
original x (a `Trace` in the importer's `atrous` table); BatchToSpaceND, when its input is
such a chain with one convolution and the same block, emits the dilated convolution. The
rearranging ops emitted before are then unused and pruned. Any other chain keeps the
rearrangement, which is correct, only slower.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

View = Callable[[Any], Any]                        # redo a view (ExpandDims, Squeeze) on a value
Conv = Callable[[Any, dict[int, int], dict[int, tuple[int, int]]], Any]  # x, {axis: dilation}, {axis: pads}


@dataclass(frozen=True)
class Trace:
    source: Any                          # x, before SpaceToBatchND
    block: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    axes: tuple[int, ...]                # where the block's spatial axes are in the traced value
    before: tuple[View, ...] = ()        # views between SpaceToBatchND and the convolution
    conv: Conv | None = None
    conv_axes: tuple[int, ...] = ()      # the block's axes in the convolution's input
    after: tuple[View, ...] = ()         # views between the convolution and BatchToSpaceND


def start(table: dict, out: Any, source: Any, block: list[int], pads: list[list[int]]) -> None:
    table[out] = Trace(source, tuple(block), tuple((int(a), int(b)) for a, b in pads),
                       tuple(range(1, 1 + len(block))))


def view(table: dict, out: Any, inp: Any, new_axes: tuple[int, ...] | None, redo: View) -> None:
    """`out` is ExpandDims/Squeeze of `inp`; `new_axes` is where the block's axes went (None: lost)."""
    t = table.get(inp)
    if t is None or new_axes is None:
        return
    if t.conv is None:
        table[out] = replace(t, axes=new_axes, before=t.before + (redo,))
    else:
        table[out] = replace(t, axes=new_axes, after=t.after + (redo,))


def conv(table: dict, out: Any, inp: Any, spatial: tuple[int, ...], redo: Conv) -> None:
    """`out` is a VALID stride-1 undilated convolution of `inp`, whose spatial axes are `spatial`."""
    t = table.get(inp)
    if t is None or t.conv is not None or not set(t.axes) <= set(spatial):
        return
    table[out] = replace(t, conv=redo, conv_axes=t.axes)


def finish(table: dict, inp: Any, block: list[int], crops: list[list[int]]
           ) -> tuple[Any, dict[int, tuple[int, int]]] | None:
    """For BatchToSpaceND(inp, block, crops): the dilated convolution's result and the crops
    still to take ({axis: (begin, end)}), or None when `inp` is not such a chain."""
    t = table.get(inp)
    if t is None or t.conv is None or tuple(block) != t.block or t.axes != tuple(range(1, 1 + len(block))):
        return None
    v = t.source
    for redo in t.before:
        v = redo(v)
    dilations, pads, left = {}, {}, {}
    for k, (axis, out_axis) in enumerate(zip(t.conv_axes, t.axes)):
        (pb, pe), (cb, ce) = t.pads[k], crops[k]
        take_b, take_e = min(pb, cb), min(pe, ce)
        dilations[axis] = t.block[k]
        pads[axis] = (pb - take_b, pe - take_e)
        left[out_axis] = (cb - take_b, ce - take_e)
    v = t.conv(v, dilations, pads)
    for redo in t.after:
        v = redo(v)
    return v, left

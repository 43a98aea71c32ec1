"""Data layouts: which axis of a tensor is the batch, the channels, each spatial dim.

Ops that care (conv, pooling, normalizations, depth_to_space, lrn) carry a
`layout` attribute for their activations and, for conv, a `weight_layout` for
the filter. Layouts are strings of axis letters:

- activations: N (batch), C (channels) and the spatial letters D, H, W, with
  C second (channels first: NCW, NCHW, NCDHW) or last (NWC, NHWC, NDHWC);
  NC for rank 2. An absent layout (None) means channels first at any rank.
- weights: O (output channels), I (input channels) and the spatial
  letters, in any order: OIHW (ONNX's), OHWI, HWIO (TensorFlow's), IOHW
  (ONNX's conv_transpose). With groups, ember.conv's I axis counts input
  channels per group and its O axis all output channels; ember.conv_transpose's
  I axis counts all input channels and its O axis output channels per group
  (each as ONNX has it).

Ranks above 5 have no letters: their channels-first layout spells each
spatial dim S (NCSSSS), and only the default (None) layouts exist for them.

TensorFlow's NHWC models import with layout="NHWC" and no transposes; the
layout pass (order 3) changes these attributes and adds transposes only at
the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ember.errors import ShapeError

if TYPE_CHECKING:
    from ember.ir.opdef import Op

SPATIAL = {1: "W", 2: "HW", 3: "DHW"}
SPATIAL_LETTERS = "DHWS"  # S: a spatial dim of a rank without letters (above 5)


def _positions(letters: str, wanted: str) -> tuple[int, ...]:
    """Where each letter of `wanted` sits in `letters`; a repeated letter (S) takes
    its occurrences in order."""
    taken: set[int] = set()
    out = []
    for c in wanted:
        i = next(i for i, letter in enumerate(letters) if letter == c and i not in taken)
        taken.add(i)
        out.append(i)
    return tuple(out)


@dataclass(frozen=True)
class Layout:
    """A validated layout: the letters and where each role sits."""

    letters: str

    def axis(self, letter: str) -> int:
        return self.letters.index(letter)

    @property
    def spatial(self) -> str:
        return "".join(c for c in self.letters if c in SPATIAL_LETTERS)

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.letters) if c in SPATIAL_LETTERS)

    @property
    def to_channels_first(self) -> tuple[int, ...]:
        """The transpose perm that brings a tensor in this layout to N, C, spatial..."""
        return (self.axis("N"), self.channel_axis, *self.spatial_axes)

    @property
    def from_channels_first(self) -> tuple[int, ...]:
        """The transpose perm that brings an N, C, spatial... tensor to this layout."""
        return inverse(self.to_channels_first)

    @property
    def channel_axis(self) -> int:
        return self.axis("C")

    @property
    def channels_last(self) -> bool:
        return self.letters.endswith("C") and len(self.letters) > 2

    def __str__(self) -> str:
        return self.letters


def channels_first(rank: int) -> str:
    if rank == 2:
        return "NC"
    if rank - 2 not in SPATIAL:
        raise ShapeError(f"no layout letters for rank {rank} (ranks 2 to 5 have them)")
    return "NC" + SPATIAL[rank - 2]


def channels_last(rank: int) -> str:
    if rank - 2 not in SPATIAL:
        raise ShapeError(f"no channels-last layout for rank {rank} (ranks 3 to 5 have one)")
    return "N" + SPATIAL[rank - 2] + "C"


def activation(op: "Op", layout: str | None, rank: int) -> Layout:
    """Validate an activation layout for a tensor of `rank`; None means channels first."""
    if layout is None:
        return _generic_channels_first(rank)
    allowed = {channels_first(rank)} if rank == 2 else {channels_first(rank), channels_last(rank)} \
        if rank - 2 in SPATIAL else set()
    if layout not in allowed:
        choices = " or ".join(sorted(allowed)) or "none at this rank"
        raise op.error(f"layout {layout!r} does not fit a rank-{rank} tensor (expected {choices})")
    return Layout(layout)


def resolve(layout: str | None, rank: int) -> Layout:
    """The Layout of an attribute already validated by `activation` (for references)."""
    return Layout(layout) if layout is not None else _generic_channels_first(rank)


def _generic_channels_first(rank: int) -> Layout:
    if rank < 2:
        raise ShapeError(f"a layout needs rank >= 2, got {rank}")
    if rank - 2 in SPATIAL or rank == 2:
        return Layout(channels_first(rank))
    # Ranks above 5 have no letters; channels first still gives N, C, then spatial.
    return Layout("NC" + "S" * (rank - 2))


@dataclass(frozen=True)
class WeightLayout:
    letters: str

    @property
    def out_axis(self) -> int:
        return self.letters.index("O")

    @property
    def in_axis(self) -> int:
        return self.letters.index("I")

    def spatial_axes(self, spatial: str) -> tuple[int, ...]:
        """Axes of the filter's spatial dims, in the order of the activation's `spatial` letters."""
        return _positions(self.letters, spatial)

    def perm(self, order: str, spatial: str) -> tuple[int, ...]:
        """The transpose perm to `order` ("OI" or "IO") then the spatial dims in `spatial`'s order."""
        return (self.letters.index(order[0]), self.letters.index(order[1]), *self.spatial_axes(spatial))

    def __str__(self) -> str:
        return self.letters


def weight(op: "Op", layout: str | None, spatial: str, default: str = "OI") -> WeightLayout:
    """Validate a filter layout for the given spatial letters; None means `default` + spatial."""
    if layout is None:
        return WeightLayout(default + spatial)
    if "S" in spatial:
        raise op.error(f"weight_layout {layout!r}: a filter of {len(spatial)} spatial dims has no layout "
                       f"letters; leave weight_layout unset (O, I, then the spatial dims)")
    if sorted(layout) != sorted("OI" + spatial):
        raise op.error(f"weight_layout {layout!r} must order the letters O, I and {', '.join(spatial)}")
    return WeightLayout(layout)


def inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    """The perm that undoes `perm`."""
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return tuple(out)


def resolve_weight(layout: str | None, spatial: str, default: str = "OI") -> WeightLayout:
    """The WeightLayout of an attribute already validated by `weight` (for references)."""
    return WeightLayout(layout if layout is not None else default + spatial)


def permutation(src: str, dst: str) -> tuple[int, ...]:
    """The transpose perm that turns a tensor in layout `src` into layout `dst`."""
    if sorted(src) != sorted(dst):
        raise ValueError(f"layouts {src} and {dst} do not have the same letters")
    return tuple(src.index(c) for c in dst)

"""The int8 ops' kernels: ember.int8_matmul and ember.int8_conv (ir/ops/int8.py), alone or as the
heavy op of an epilogue fusion (fuse-epilogue puts the elementwise ops after them, such as the
dequantize of a requantized result and a residual add, into their kernel).

Each planner proposes tactics, the heuristic's pick first (codegen/ops/heavy.py's way):
- `mma<BM>x<BN>x<BK>/<WM>x<WN>`: the tensor-core tiles of include/ember_int8.cuh
  (mma.sync m16n8k32, s8 operands, s32 accumulation, sm_80 and newer; the same kernel runs a
  SIMT loop over the tile before sm_80), for operands the tiles read 16 bytes at a time: a
  matmul whose K is a multiple of 16; a convolution channels-last with an OHWI filter, one
  group and C_in a multiple of 16. 128 x 128 where the product fills every multiprocessor with
  those, else 64 x 64.
- `direct`: one thread per output element, any shape, layout and group count: the fallback for
  what the tiles do not take (K or C_in not a multiple of 16, grouped and depthwise
  convolutions, channels-first layouts).

Either way the epilogue runs in registers (the template's `Rescale`: zero-point correction,
scales, bias, relu, requantization) and hands the op's value to the functor that
cuda_render.render_epilogue writes (the value as the op's result type, then any fused
elementwise ops, then the store); a tile with nothing fused after its op and its channels
adjacent in the output stores through the header's `ember::int8::Store` instead, two channels
with one store where aligned. The scales, bias and zero points are kernel parameters of
their own, read by the template; the functor's operands are the fused ops'. The planners are
codegen/ops/quantized.py's, which fp8.py shares; `Int8Kernel` says what is int8's.
"""

from __future__ import annotations

from ember.codegen.ops.quantized import TileKernel, conv_tiles_fit, register
from ember.ir.core import Value

C_TYPES = {"x": "signed char", "w": "signed char", "x_scale": "float", "w_scale": "float", "bias": "float",
           "x_zero_point": "signed char", "y_scale": "float", "y_zero_point": "signed char"}


class Int8Kernel(TileKernel):
    """s8 operands; the templates' flags: requantized, relu, per-channel scales (and the tiles'
    x zero point)."""

    kind = "int8"
    MMA_TILES = {"mma128x128x32/64x32": (128, 128, 32, 64, 32), "mma64x64x64/32x16": (64, 64, 64, 32, 16)}
    OPERANDS = ("x", "w", "x_scale", "w_scale", "bias", "x_zero_point", "y_scale", "y_zero_point")

    @property
    def requant(self) -> bool:
        return self.values["y_scale"] is not None

    @property
    def zx(self) -> bool:
        return self.values["x_zero_point"] is not None

    def c_type(self, operand: str, v: Value | None) -> str:
        return C_TYPES[operand]

    def store_kind(self) -> str:
        return "int" if self.requant else "float"

    def flags(self) -> tuple[bool, ...]:
        return (self.requant, *super().flags())

    def tile_flags(self) -> tuple[bool, ...]:
        return (*self.flags(), self.zx)


MMA_TILES = Int8Kernel.MMA_TILES
tile_candidates = Int8Kernel.tile_candidates
PLANNERS = register(Int8Kernel)

__all__ = ["MMA_TILES", "PLANNERS", "conv_tiles_fit", "tile_candidates"]

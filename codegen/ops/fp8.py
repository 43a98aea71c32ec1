"""The fp8 ops' kernels: ember.fp8_matmul and ember.fp8_conv (ir/ops/fp8.py), alone or as the heavy op
of an epilogue fusion (fuse-epilogue puts the elementwise ops after them, such as the cast of an
f32 result to f16 and a residual add, into their kernel).

Each planner proposes tactics, the heuristic's pick first (codegen/ops/heavy.py's way):
- `mma<BM>x<BN>x<BK>/<WM>x<WN>`: the tensor-core tiles of include/ember_fp8.cuh, for operands
  the tiles read 16 bytes at a time: a matmul whose K is a multiple of 16; a convolution
  channels-last with an OHWI filter, one group and C_in a multiple of 16 (the int8 tiles' rule:
  `quantized.conv_tiles_fit`). The same kernel multiplies on fp8 tensor cores (m16n8k32 e4m3/e5m2)
  where it runs on sm_89 or newer, widens the fp8 fragments to f16 for m16n8k16 on sm_80 .. sm_88,
  and runs a SIMT loop over the tile before sm_80: the fp8 instructions are compiled only into
  the cubins of the targets that have them, and an engine for sm_80 and sm_90 is valid on both.
  A deep-k tile (BK 64, two stages) first where the product fills every multiprocessor with
  128 x 128 tiles, else 64 x 64.
- `direct`: one thread per output element, any shape, layout and group count: the fallback for
  what the tiles do not take (K or C_in not a multiple of 16, grouped and depthwise
  convolutions, channels-first layouts).

Either way the epilogue runs in registers (the template's `Rescale`: scales, bias, relu) and
hands the op's f32 value to the functor that cuda_render.render_epilogue writes (the value as
the op's result type, then any fused elementwise ops, then the store); a tile with nothing fused
after its op and its channels adjacent in the output stores through `ember::int8::Store`,
two channels with one store where aligned. The planners are codegen/ops/quantized.py's, which
int8.py shares; `Fp8Kernel` says what is fp8's.
"""

from __future__ import annotations

from ember.codegen.ops.quantized import TileKernel, register
from ember.ir.core import Value

FP8_C_TYPES = {"f8e4m3fn": "__nv_fp8_e4m3", "f8e5m2": "__nv_fp8_e5m2"}


class Fp8Kernel(TileKernel):
    """e4m3/e5m2 operands, f32 scales and bias; the templates' flags: relu, per-channel scales."""

    kind = "fp8"
    MMA_TILES = {"mma128x128x64/64x32": (128, 128, 64, 64, 32), "mma128x128x32/64x32": (128, 128, 32, 64, 32),
                 "mma64x64x64/32x16": (64, 64, 64, 32, 16)}
    OPERANDS = ("x", "w", "x_scale", "w_scale", "bias")

    def c_type(self, operand: str, v: Value | None) -> str | None:
        if operand not in ("x", "w"):
            return "float"
        assert v is not None
        return FP8_C_TYPES.get(self.ctx.dtype(v).name)


MMA_TILES = Fp8Kernel.MMA_TILES
tile_candidates = Fp8Kernel.tile_candidates
PLANNERS = register(Fp8Kernel)

__all__ = ["MMA_TILES", "PLANNERS", "tile_candidates"]

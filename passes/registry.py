"""Imports every built-in pass (registering it) and names the built-in pipelines."""

from ember.passes import (bound_data_sizes, canonicalize, compose_layouts, convert_precision, cse, dce,  # noqa: F401
                          fold_batch_norm, fold_constants, fold_qdq, fold_qdq_fp8, fuse_elementwise, fuse_epilogue,
                          layout_nhwc, lower_quantization, merge_projections, quantize_fp8, quantize_int8,
                          recognize)
from ember.passes.manager import register_pipeline

register_pipeline("cleanup", "canonicalize,cse,fold-constants,canonicalize",
                  doc="simplify, merge duplicates, fold constants")

# The inference pipeline: simplify; quantize/dequantize pairs around conv, matmul and gemm with
# constant int8 weights as int8 ops (fold-qdq), and the fp8 pairs as fp8 ops (fold-qdq-fp8), both
# before fold-constants would turn a quantized weight's dequantize into a float weight; fold;
# fold normalizations into weights; find the single ops exporters decomposed (attention, GELU,
# LayerNorm); move convolutions to channels-last and cancel the transposes (then merge recurrent
# layers run both ways into bidirectional ops); write the quantize/dequantize ops left as
# elementwise ops (a constant weight's dequantize folds into an f32 weight); give results
# whose size is data (NMS's) a fixed-size form and a count; merge the products of one input by
# weights of one shape (Q, K and V) into one; then fuse heavy ops with their
# epilogues and the remaining elementwise chains. Precision stays f32 (convert-precision is opt-in).
DEFAULT = ("canonicalize,fold-qdq,fold-qdq-fp8,fold-constants,fold-batch-norm,recognize-patterns,canonicalize,cse,"
           "layout-nhwc,canonicalize,recognize-recurrent,fold-constants,cse,lower-quantization,bound-data-sizes,"
           "merge-projections,fold-constants,cse,"
           "compose-layouts,fuse-epilogue,fuse-elementwise,dce")
register_pipeline("default", DEFAULT, doc="the inference pipeline")

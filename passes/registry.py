"""Imports every built-in pass (registering it) and names the built-in pipelines."""

from ember.passes import (canonicalize, convert_precision, cse, dce, fold_batch_norm, fold_constants,  # noqa: F401
                          fuse_elementwise, fuse_epilogue, layout_nhwc, recognize)
from ember.passes.manager import register_pipeline

register_pipeline("cleanup", "canonicalize,cse,fold-constants,canonicalize",
                  doc="simplify, merge duplicates, fold constants")

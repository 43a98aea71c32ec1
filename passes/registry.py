"""Imports every built-in pass (registering it) and names the built-in pipelines."""

from ember.passes import canonicalize, cse, dce, fold_constants  # noqa: F401
from ember.passes.manager import register_pipeline

register_pipeline("cleanup", "canonicalize,cse,fold-constants,canonicalize",
                  doc="simplify, merge duplicates, fold constants")

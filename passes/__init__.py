"""Graph passes: rewrite rules, the pass manager, canonicalization, fusion, layout,
precision (issue order 3). Imports `ember.ir` only."""

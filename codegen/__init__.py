"""CUDA C generation and NVRTC compilation (issue order 4). Imports `ember.ir` only."""

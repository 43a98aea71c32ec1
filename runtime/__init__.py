"""Engines and their execution: the engine file, the memory planner, the host-arena executor
and the CUDA execution context (through cuda-python). Imports `ember.ir` only, so an engine
runs without the compiler."""

from ember.runtime.engine import Engine, EngineInputError, TensorSpec
from ember.runtime.engine_format import EngineFormatError

__all__ = ["Engine", "EngineFormatError", "EngineInputError", "TensorSpec"]

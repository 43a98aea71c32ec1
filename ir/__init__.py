"""Ember's IR: typed SSA with a textual form, the op set, verifier and reference interpreter.

`ember.ir` imports no other layer of Ember (only `ember.errors`): frontends,
passes, codegen and runtime all build on it.
"""

from ember.ir import ops as _ops  # noqa: F401  (registers the built-in ops)
from ember.ir.attrs import Dense
from ember.ir.builder import Builder
from ember.ir.core import Block, Function, Location, Module, Operation, SymbolRange, Use, Value, Weight
from ember.ir.dims import DimExpr, Unknown, broadcast_dim, broadcast_shapes, sym
from ember.ir.equality import structural_diff, structurally_equal
from ember.ir.files import load_module, save_module
from ember.ir.interpret import interpret
from ember.ir.opdef import REGISTRY, Op, Trait, lookup, register_op
from ember.ir.parser import parse, parse_dim, parse_type
from ember.ir.types import (DTYPES, DType, OptionalType, SequenceType, TensorType, Type, bf16, boolean, c64,
                            c128, dtype, dtype_of, f4e2m1, f6e2m3, f6e3m2, f8e4m3fn, f8e4m3fnuz, f8e5m2,
                            f8e5m2fnuz, f8e8m0, f16, f32, f64, i2, i4, i8, i16, i32, i64, string, tensor, u2,
                            u4, u8, u16, u32, u64)
from ember.ir.verify import verify

__all__ = [
    "Block", "Builder", "DTYPES", "DType", "Dense", "DimExpr", "Function", "Location", "Module", "Op",
    "Operation", "OptionalType", "REGISTRY", "SequenceType", "SymbolRange", "TensorType", "Trait", "Type",
    "Unknown", "Use", "Value", "Weight", "bf16", "boolean", "broadcast_dim", "broadcast_shapes", "c64", "c128",
    "dtype", "dtype_of", "f4e2m1", "f6e2m3", "f6e3m2", "f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz",
    "f8e8m0", "f16", "f32", "f64", "i2", "i4", "i8", "i16", "i32", "i64", "interpret", "load_module", "lookup",
    "parse", "parse_dim", "parse_type", "register_op", "save_module", "string", "structural_diff",
    "structurally_equal", "sym", "tensor", "u2", "u4", "u8", "u16", "u32", "u64", "verify",
]

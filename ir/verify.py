"""`verify(module)`: every IR invariant, every problem reported at once.

Checks, per module: symbol declarations, weight declarations against their
data; per function: named unique inputs and outputs, SSA (each use after its
definition, isolated regions reading only their arguments); per op: its
schema (operand counts and kinds, attributes), its type rule re-run against
the declared result types (they must be compatible: where one leaves a dim
unknown, the other may know it), and its own extra checks (`verify_`).
"""

from __future__ import annotations

from ember.errors import EmberError, VerifyError
from ember.ir import sizes
from ember.ir.attrs import AttrError, attr_equal
from ember.ir.core import Block, Function, Module, Operation, Value
from ember.ir.opdef import Op, format_exception
from ember.ir.printer import name_values
from ember.ir.types import DTYPES, TensorType, compatible


class _Checker:
    """Walks a module once, in order; the cost is linear in its ops (regions included)."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.problems: list[str] = []
        self.pending: list[tuple[str, Function | None, Operation | None]] = []
        self.fn: Function | None = None
        self.current: Operation | None = None
        self.sized: dict[object, str | None] = {}

    def report(self, where: str, message: str) -> None:
        self.pending.append((f"{where}{message}", self.fn, self.current))

    def finish(self) -> None:
        """Each problem with the printed line of its op: printing (naming every value of the
        function) happens only for functions that have problems."""
        lines: dict[Function, dict[Operation, str]] = {}
        for text, fn, op in self.pending:
            line = None
            if fn is not None and op is not None:
                if fn not in lines:
                    try:
                        lines[fn] = name_values(fn).op_lines
                    except Exception:  # printing a badly broken function can fail; verify without context
                        lines[fn] = {}
                line = lines[fn].get(op)
            self.problems.append(text + (f"\n      at: {line}" if line else ""))

    def run(self) -> None:
        m = self.module
        if not m.functions:
            self.report("", "module has no functions: nothing to run")
        for name in m.symbols:
            if name in DTYPES or not name.isidentifier():
                self.report("", f"symbol {name!r} is not a valid symbol name")
        for name, w in m.weights.items():
            if w.name != name:
                self.report("", f"weight stored as {name!r} is named {w.name!r}")
            if not isinstance(w.type, TensorType) or not w.type.is_static:
                self.report("", f"weight {name!r} needs a static tensor type, has {w.type}")
            elif self.too_big(w.type):
                self.report("", f"weight {name!r}: {self.too_big(w.type)}")
            elif w.data is not None:
                try:
                    w.check(w.data)
                except ValueError as err:
                    self.report("", str(err))
        for fn in m.functions.values():
            self.fn = fn
            self.function(fn)
        self.fn = None
        self.finish()

    def function(self, fn: Function) -> None:
        where = f"@{fn.name}: "
        names = [a.name for a in fn.body.args]
        if any(not n for n in names):
            self.report(where, "every input needs a name")
        if len(set(names)) != len(names):
            self.report(where, f"duplicate input names {sorted(n for n in names if names.count(n) > 1)}")
        if len(fn.output_names) != len(fn.body.outputs):
            self.report(where, f"{len(fn.output_names)} output names for {len(fn.body.outputs)} outputs")
        if len(set(fn.output_names)) != len(fn.output_names):
            self.report(where, "duplicate output names")
        for name, arg in zip(fn.input_names, fn.body.args):
            problem = self.too_big(arg.type)
            if problem:
                self.report(where, f"input %{name}: {problem}")
        self.block(fn.body, set(), fn)

    def too_big(self, t: object) -> str | None:
        """What is wrong with a tensor type whose known dims already hold more than Ember's
        size limit (`ember.ir.sizes`); None when they do not. Symbols are checked when bound."""
        problem = self.sized.get(t, "")
        if problem != "":
            return problem
        problem = None
        if isinstance(t, TensorType) and t.shape is not None:
            known = [d for d in t.shape if isinstance(d, int)]
            try:
                sizes.nbytes(known, t.dtype.itemsize, str(t))
            except sizes.SizeError as err:
                problem = str(err)
        self.sized[t] = problem
        return problem

    def block(self, block: Block, visible: set[Value], fn: Function) -> None:
        """Check `block` with `visible` the values defined before it; what the block defines
        is added to that same set and taken out again when it ends (no copy per region)."""
        added = [a for a in block.args if a not in visible]
        visible.update(added)
        try:
            for op in block.ops:
                self.op(op, visible, fn)
                for r in op.results:
                    if r not in visible:
                        visible.add(r)
                        added.append(r)
            for i, v in enumerate(block.outputs):
                if v not in visible:
                    self.report(f"@{fn.name}: ", f"output {i} uses a value that is not defined before it")
        finally:
            visible.difference_update(added)

    def op(self, op: Operation, visible: set[Value], fn: Function) -> None:
        self.current = op
        try:
            self._op(op, visible, fn)
        finally:
            self.current = None

    def _op(self, op: Operation, visible: set[Value], fn: Function) -> None:
        where = f"{op.loc}: " if op.loc else ""
        head = f"{where}{op.name}: "
        for i, v in enumerate(op.operands):
            if v is not None and v not in visible:
                self.report(head, f"operand {i} is not defined before this op, or is outside an isolated region")
        if not isinstance(op, Op):
            self.report(head, "is not a registered op")
            return
        ok = self.schema(op, head)
        for fld, region in zip(op.region_fields, op.regions):
            self.block(region, set() if fld.isolated else visible, fn)
        self.current = op
        if not ok:
            return
        try:
            inferred = op.infer_result_types()
        except EmberError as err:
            self.report("", str(err))
            return
        except Exception as err:  # a bug in the op's type rule: still report, with the op
            self.report(head, f"type rule failed: {format_exception(err)}")
            return
        declared = [r.type for r in op.results]
        for i, d in enumerate(declared):
            problem = self.too_big(d)
            if problem:
                self.report(head, f"result {i}: {problem}")
        if len(inferred) != len(declared):
            self.report(head, f"declares {len(declared)} results; the type rule gives {len(inferred)}")
            return
        for i, (d, t) in enumerate(zip(declared, inferred)):
            if d is not t and not compatible(d, t):
                self.report(head, f"result {i} is declared {d} but the type rule gives {t}")
        try:
            op.verify_()
        except EmberError as err:
            self.report("", str(err))

    def schema(self, op: Op, head: str) -> bool:
        try:
            op.operand_groups()
        except EmberError as err:
            self.report("", str(err))
            return False
        ok = True
        for key, fld in op.attr_fields.items():
            if key not in op.attributes:
                self.report(head, f"attribute {key!r} is missing")
                ok = False
                continue
            value = op.attributes[key]
            if value is None and (fld.required or fld.default is not None):
                self.report(head, f"missing required attribute {key!r}")
                ok = False
                continue
            if value is not None:
                try:
                    if not attr_equal(fld.kind.normalize(value), value):
                        raise AttrError(f"not in canonical form: {value!r}")
                except AttrError as err:
                    self.report(head, f"attribute {key!r}: {err}")
                    ok = False
        for key in op.attributes:
            if key not in op.attr_fields:
                self.report(head, f"unknown attribute {key!r}")
                ok = False
        if len(op.regions) != len(op.region_fields):
            self.report(head, f"has {len(op.regions)} regions; expects {len(op.region_fields)}")
            ok = False
        return ok


def verify(module: Module) -> Module:
    """Raise one VerifyError naming every problem in `module`; return it when valid."""
    checker = _Checker(module)
    checker.run()
    if checker.problems:
        n = len(checker.problems)
        title = module.name and f"@{module.name}" or "module"
        first = checker.problems[0]
        head = first if n == 1 else f"{title}: {n} verification errors"
        body = "\n".join(f"  {p}" for p in checker.problems)
        raise VerifyError(head if n == 1 else f"{head}\n{body}", tuple(checker.problems))
    return module


def verify_function(fn: Function) -> None:
    verify(Module(functions={fn.name: fn}))

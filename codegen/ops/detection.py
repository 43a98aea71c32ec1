"""Detectors' post-processing: non-max suppression and RoI align, from include/ember_detection.cuh.

ember.nms_padded runs as two launches. The first gives each (image, class) pair a block that
selects its boxes greedily (a block-wide arg-max per kept box, then the boxes it suppresses
retired), writing the kept indices and their count to scratch. The second, one block, lays
the rows out in order, pads the rest with -1 and writes the total count, which is all that
the runtime reads back to size the ember.head after it (passes/bound_data_sizes.py).
ember.roi_align is one thread per output element, its samples' positions computed as the
interpreter computes them.
"""

from __future__ import annotations

from ember.codegen.cuda_render import compute_ctype, ctype
from ember.codegen.kernel_builder import BLOCK, KernelBuilder, f64_bits
from ember.codegen.lower import LowerContext, lowering
from ember.codegen.symbolic import contiguous_strides, numel, smin
from ember.errors import UnsupportedOpError
from ember.ir.core import Operation

NMS_BLOCK = 256      # threads per (image, class) pair
GATHER_BLOCK = 1024  # threads of the one block that lays out the rows


@lowering("ember.nms_padded")
def nms_padded(ctx: LowerContext, op: Operation) -> None:
    boxes, scores = op.operands
    rows, count = op.results
    batch, m, _ = ctx.shape(boxes)
    classes = ctx.shape(scores)[1]
    k = op.attributes["max_output_boxes_per_class"]
    limit = smin(m, k) if k > 0 else 0
    pairs = batch * classes
    bound = ctx.shape(rows)[0]
    tb, ts = ctx.dtype(boxes), ctx.dtype(scores)
    if tb.kind != "float" or ts.kind != "float":
        raise UnsupportedOpError(f"nms of {tb} boxes and {ts} scores")
    pos = "double" if "f64" in (tb.name, ts.name) else "float"
    score_limit = op.attributes["score_threshold"]
    center = "true" if op.attributes["center_point_box"] else "false"

    select = KernelBuilder(ctx, "nms_select", "long long", header="ember_detection.cuh")
    counts = select.ptr("counts", "long long", "scratch", ctx.scratch(8 * pairs))
    picks = select.ptr("picks", "long long", "scratch", ctx.scratch(8 * pairs * limit))
    live = select.ptr("live", "unsigned char", "scratch", ctx.scratch(pairs * m))
    bx, sc = select.inp(boxes, ctype(tb)), select.inp(scores, ctype(ts))
    limits = select.put_f64(op.attributes["iou_threshold"])
    select.put_f64(0.0 if score_limit is None else score_limit)
    has_limit = "false" if score_limit is None else "true"
    if limit:
        select.launch(f"ember::nms_select<{ctype(tb)}, {ctype(ts)}, {pos}, {center}, {has_limit}>({counts}, {picks}, "
                      f"{live}, {bx}, {sc}, {select.size(classes)}, {select.size(m)}, {select.size(limit)}, "
                      f"({pos})__longlong_as_double(meta[{limits}]), ({pos})__longlong_as_double(meta[{limits + 1}]), "
                      f"{select.n})", pairs, 1, (NMS_BLOCK,))

    gather = KernelBuilder(ctx, "nms_gather", "long long", header="ember_detection.cuh")
    g_counts = gather.ptr("counts", "long long", "scratch", ctx.scratch(8 * pairs))
    g_picks = gather.ptr("picks", "long long", "scratch", ctx.scratch(8 * pairs * limit))
    offsets = gather.ptr("offsets", "long long", "scratch", ctx.scratch(8 * pairs))
    out, n_out = gather.out(rows, "long long"), gather.out(count, "long long")
    gather.launch(f"ember::nms_gather({out}, {n_out}, {offsets}, {g_counts}, {g_picks}, {gather.size(classes)}, "
                  f"{gather.size(pairs if limit else 0)}, {gather.size(limit)}, {gather.size(bound)})",
                  1, 1, (GATHER_BLOCK,))


@lowering("ember.roi_align")
def roi_align(ctx: LowerContext, op: Operation) -> None:
    """One thread per output element; strides carry x's and the result's layout."""
    x, rois, indices = op.operands
    y = op.results[0]
    layout = op.attributes["layout"]
    if layout not in (None, "NHWC"):
        raise UnsupportedOpError(f"roi_align in layout {layout}")
    xshape, yshape = ctx.shape(x), ctx.shape(y)
    xstr, ystr = contiguous_strides(xshape), contiguous_strides(yshape)
    if layout == "NHWC":  # (n, h, w, c) stored: strides of (n, c, h, w)
        (n, h, w, c), xs = xshape, [xstr[0], xstr[3], xstr[1], xstr[2]]
        (r, oh, ow, _), ys = yshape, [ystr[0], ystr[3], ystr[1], ystr[2]]
    else:
        (n, c, h, w), xs = xshape, list(xstr)
        (r, _, oh, ow), ys = yshape, list(ystr)
    dt = ctx.dtype(x)
    t, comp = ctype(dt), compute_ctype(dt)
    pos = "double" if dt.name == "f64" else "float"
    kb = KernelBuilder(ctx, "roi_align", "long long", header="ember_detection.cuh")
    o, ix, ir, ii = kb.out(y, t), kb.inp(x, t), kb.inp(rois, t), kb.inp(indices, ctype(ctx.dtype(indices)))
    kb.put([*xs, *ys, n, c, h, w, r, oh, ow])
    scale = kb.put([f64_bits(op.attributes["spatial_scale"])])
    half = "true" if op.attributes["coordinate_transformation_mode"] == "half_pixel" else "false"
    mode = "true" if op.attributes["mode"] == "max" else "false"
    kb.launch(f"ember::roi_align<{t}, {comp}, {ctype(ctx.dtype(indices))}, {pos}, {half}, {mode}>({o}, {ix}, {ir}, "
              f"{ii}, meta, ({pos})__longlong_as_double(meta[{scale}]), {kb.size(op.attributes['sampling_ratio'])}, "
              f"{kb.n})", numel(yshape), BLOCK)

/**
 * Runs of rows copied between tensors by buffer copies (no kernel, no offset bindings, so no
 * alignment rule): a tensor read as `total` rows, runs as [first row, rows]. Row chunks
 * (runtime/model/row_chunks.ts) gather and scatter their chunks with them, the VAE's attention
 * and explicit im2col their per-sample and per-chunk rows. (embed.ts's gatherRows is another
 * thing: rows of a table picked by ids, in a kernel.)
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import { createTensor, DTYPE_BYTES, type Tensor } from "../gpu/tensor.ts";

/** Rows in `runs`. */
export function rowsOf(runs: readonly [number, number][]): number {
  return runs.reduce((a, [, n]) => a + n, 0);
}

/** Bytes of one row of `t` read as `total` rows; checks copies can address it. */
function rowBytesOf(t: Tensor, total: number): number {
  const bytes = (t.size / total) * DTYPE_BYTES[t.dtype];
  if (!Number.isInteger(bytes) || bytes % 4 !== 0) {
    throw new RangeError(
      `row runs: a [${t.shape}] ${t.dtype} tensor is not ${total} rows of whole 4-byte words`,
    );
  }
  return bytes;
}

/** A new [rows, W] tensor of `t`'s rows in `runs` (t read as `total` rows). */
export function gatherRowRuns(
  rec: Recorder,
  t: Tensor,
  total: number,
  runs: readonly [number, number][],
): Tensor {
  const rb = rowBytesOf(t, total);
  const g = createTensor(rec.runtime, [rowsOf(runs), t.size / total], t.dtype);
  let at = 0;
  for (const [r, n] of runs) {
    rec.copy(t, g, n * rb, r * rb, at);
    at += n * rb;
  }
  return g;
}

/** Writes the rows of `y` (in order) into `out`'s rows in `runs`. */
export function scatterRowRuns(
  rec: Recorder,
  y: Tensor,
  out: Tensor,
  runs: readonly [number, number][],
): void {
  const rb = rowBytesOf(y, rowsOf(runs));
  if (y.dtype !== out.dtype || out.size % (rb / DTYPE_BYTES[y.dtype]) !== 0) {
    throw new RangeError(
      `row runs: [${y.shape}] ${y.dtype} rows do not fit [${out.shape}] ${out.dtype}`,
    );
  }
  let at = 0;
  for (const [r, n] of runs) {
    rec.copy(y, out, n * rb, at, r * rb);
    at += n * rb;
  }
}

/**
 * Row chunks: running a token-wise part of a model (a feed-forward, FLUX's single-block MLP
 * and output) on a few rows at a time when its widest intermediate would not bind whole.
 *
 * A PixArt-α step at 1024² with guidance holds a [2·4096, 4608] f32 feed-forward
 * intermediate: 151 MB, over the 128 MiB a CPU adapter binds. The layers are row-wise, so
 * the same sums come out of chunks of rows; a chunk respects what its layers couple
 * ({@linkcode RowScope}): whole samples for centred layers, whole CFG pairs for CFG-delta
 * ones. Each chunk's rows are gathered into tensors of their own and its output rows
 * scattered back (buffer copies, not offset bindings, so no alignment rule applies). When
 * the intermediate fits, the body runs once on the tensors as they are.
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { gatherRowRuns, rowsOf, scatterRowRuns } from "../ops/row_runs.ts";
import type { Linear, RowScope } from "./linear.ts";

/** The rows a chunked part runs on: `samples` samples of `rowsPerSample` rows each. */
export interface RowBatch {
  /** Samples in the batch (under guidance, uncond samples first, then cond ones). */
  samples: number;
  /** Rows (tokens) per sample. */
  rowsPerSample: number;
  /** The batch is a CFG pair [uncond; cond]. */
  cfgPair: boolean;
}

/** One chunk: runs of whole-batch rows and of samples, in order. */
export interface RowChunk {
  /** [first row, rows] runs of the batch's rows. */
  rows: [number, number][];
  /** [first sample, samples] runs: the samples whose per-sample rows (gates) it takes. */
  samples: [number, number][];
  /** Rows of its layer inputs that make one sample (a part of one sample: all its rows). */
  rowsPerSample: number;
  /** The chunk is itself a CFG pair [uncond; cond]. */
  cfgPair: boolean;
}

const SCOPE_ORDER: readonly RowScope[] = ["row", "sample", "pair", "batch"];

/** The widest scope of `layers` (a layer without one: "batch"). */
export function widestScope(layers: readonly Linear[]): RowScope {
  let i = 0;
  for (const l of layers) i = Math.max(i, SCOPE_ORDER.indexOf(l.rowScope ?? "batch"));
  return SCOPE_ORDER[i];
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * Splits a batch into chunks whose rows of `rowBytes` bytes each fit `limit` bytes;
 * undefined when the whole batch fits (run it as it is).
 * @throws {RangeError} when the smallest chunk `scope` allows does not fit, naming `what`.
 */
export function planRowChunks(
  b: RowBatch,
  scope: RowScope,
  rowBytes: number,
  limit: number,
  what: string,
): RowChunk[] | undefined {
  const { samples: B, rowsPerSample: T } = b;
  if (B * T * rowBytes <= limit) return undefined;
  const maxRows = Math.floor(limit / rowBytes);
  const pair = scope === "pair" && b.cfgPair;
  // Outside a CFG pair, pair-scoped layers (CFG delta, maybe centred) still take whole samples.
  const unit = scope === "batch" ? B * T : pair ? 2 * T : scope === "row" ? 1 : T;
  if (unit > maxRows) {
    const part = scope === "batch"
      ? "the whole batch"
      : pair
      ? "one CFG pair"
      : scope === "row"
      ? "one row"
      : "one sample";
    throw new RangeError(
      `${what}: ${part} (${unit} rows of ${rowBytes} bytes, ${mib(unit * rowBytes)}) is over ` +
        `this adapter's binding limit of ${mib(limit)}, and its layers cannot split ${part}; ` +
        `use a smaller image or batch`,
    );
  }
  const chunks: RowChunk[] = [];
  if (pair) {
    if (B % 2 !== 0) throw new RangeError(`${what}: a CFG pair needs an even batch, got ${B}`);
    const half = B / 2;
    const k = Math.floor(maxRows / (2 * T));
    for (let p = 0; p < half; p += k) {
      const n = Math.min(k, half - p);
      chunks.push({
        rows: [[p * T, n * T], [(half + p) * T, n * T]],
        samples: [[p, n], [half + p, n]],
        rowsPerSample: T,
        cfgPair: true,
      });
    }
  } else if (maxRows >= T) {
    // Whole samples: the cheaper gathers, and what centring layers need.
    const k = Math.floor(maxRows / T);
    for (let s = 0; s < B; s += k) {
      const n = Math.min(k, B - s);
      chunks.push({ rows: [[s * T, n * T]], samples: [[s, n]], rowsPerSample: T, cfgPair: false });
    }
  } else {
    // Row scope only (unit 1): parts of one sample, sharing its gate row.
    for (let s = 0; s < B; s++) {
      for (let r = 0; r < T; r += maxRows) {
        const n = Math.min(maxRows, T - r);
        chunks.push({
          rows: [[s * T + r, n]],
          samples: [[s, 1]],
          rowsPerSample: n,
          cfgPair: false,
        });
      }
    }
  }
  return chunks;
}

/** What the body of {@linkcode rowChunked} gets for one chunk (or for the whole batch). */
export interface ChunkScope {
  /** This chunk's rows of a whole-batch row tensor [samples·rowsPerSample, W]. */
  rows(t: Tensor): Tensor;
  /** This chunk's rows of a per-sample tensor [samples, W] (gates). */
  perSample(t: Tensor): Tensor;
  /** Rows per sample and CFG pairing, as the layers' epilogue takes them. */
  tokens: { rowsPerSample: number; cfgPair: boolean };
  /** Output rows per row of `perSample(gate)`. */
  rowsPerGate: number;
}

/** Options of {@linkcode rowChunked}. */
export interface RowChunkedOptions {
  /** The batch's rows. */
  batch: RowBatch;
  /** The layers the body runs: their scopes bound how rows may be split. */
  layers: readonly Linear[];
  /** Values per row of the body's widest intermediate (sized at 4 bytes a value). */
  width: number;
  /** Names the part in errors, e.g. "transformer_blocks.3.ff". */
  what: string;
  /** Bytes one binding may hold; default the runtime's binding limit. */
  limit?: number;
}

/**
 * Runs `body` on the whole batch, or — when a [rows, width] f32 intermediate would not
 * bind — on row chunks whose outputs are gathered into one [rows, W] tensor. The body
 * returns a new tensor of its chunk's rows; inputs it takes through the scope are released
 * after it.
 */
export function rowChunked(
  rec: Recorder,
  o: RowChunkedOptions,
  body: (c: ChunkScope) => Tensor,
): Tensor {
  const b = o.batch;
  const limit = o.limit ?? rec.runtime.bindingLimit;
  const chunks = planRowChunks(b, widestScope(o.layers), 4 * o.width, limit, o.what);
  if (!chunks) {
    return body({
      rows: (t) => t,
      perSample: (t) => t,
      tokens: { rowsPerSample: b.rowsPerSample, cfgPair: b.cfgPair },
      rowsPerGate: b.rowsPerSample,
    });
  }
  const M = b.samples * b.rowsPerSample;
  let out: Tensor | undefined;
  try {
    for (const c of chunks) {
      const taken: Tensor[] = [];
      const take = (t: Tensor, total: number, runs: [number, number][]) => {
        const g = gatherRowRuns(rec, t, total, runs);
        taken.push(g);
        return g;
      };
      let y: Tensor;
      try {
        y = body({
          rows: (t) => take(t, M, c.rows),
          perSample: (t) => take(t, b.samples, c.samples),
          tokens: { rowsPerSample: c.rowsPerSample, cfgPair: c.cfgPair },
          rowsPerGate: c.rowsPerSample,
        });
      } finally {
        for (const t of taken) t.release();
      }
      try {
        const W = y.size / rowsOf(c.rows);
        out ??= createTensor(rec.runtime, [M, W], y.dtype);
        scatterRowRuns(rec, y, out, c.rows);
      } finally {
        y.release();
      }
    }
  } catch (e) {
    out?.release();
    throw e;
  }
  return out!;
}

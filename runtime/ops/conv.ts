/**
 * Convolutions of the VAE decoder on channels-last images ([B, H, W, C] as [B·H·W, C]):
 * a 3×3, stride-1, zero-padded convolution (optionally reading the input upsampled 2× by
 * nearest neighbour) as the tiled GEMM whose X loads compute the im2col addresses
 * (wgsl/gemm_io_conv3x3.wgsl: no im2col buffer) where C % 4 == 0 in f32, else as an
 * explicit im2col (wgsl/im2col3x3.wgsl) + the GEMM in chunks of output rows so no im2col
 * buffer passes the binding limit; and the channels-first ↔ channels-last transpose
 * (wgsl/transpose.wgsl). A 1×1 convolution is a plain GEMM.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import type { ImageShape } from "../reference/conv.ts";
import { gemm } from "./gemm.ts";
import { gatherRowRuns, scatterRowRuns } from "./row_runs.ts";
import im2colSrc from "../../wgsl/im2col3x3.wgsl" with { type: "text" };
import transposeSrc from "../../wgsl/transpose.wgsl" with { type: "text" };

const WG = 256;

interface Im2colParams {
  b: number;
  row0: number;
  s: ImageShape;
  up: number;
  n: number;
}

interface TransposeParams {
  r: number;
  c: number;
  n: number;
}

const im2colSpecs = new Map<StorageType, KernelSpec<Im2colParams>>();
const transposeSpecs = new Map<StorageType, KernelSpec<TransposeParams>>();

function im2colSpec(dt: StorageType): KernelSpec<Im2colParams> {
  let spec = im2colSpecs.get(dt);
  if (!spec) {
    const c = composeWgsl(im2colSrc, { storage: dt });
    spec = {
      name: `im2col3x3_${dt}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read_write"],
      constants: () => ({ WG }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"],
        values: (p) => [p.b, p.row0, p.s.H, p.s.W, p.s.C, p.up, p.n, 0],
      },
      dispatch: (p) => grid1d(Math.ceil(p.n / WG)),
    };
    im2colSpecs.set(dt, spec);
  }
  return spec;
}

function transposeSpec(dt: StorageType): KernelSpec<TransposeParams> {
  let spec = transposeSpecs.get(dt);
  if (!spec) {
    const c = composeWgsl(transposeSrc, { storage: dt });
    spec = {
      name: `transpose_${dt}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read_write"],
      constants: () => ({ WG }),
      uniform: { fields: ["u32", "u32", "u32", "u32"], values: (p) => [p.r, p.c, p.n, 0] },
      dispatch: (p) => grid1d(Math.ceil(p.n / WG)),
    };
    transposeSpecs.set(dt, spec);
  }
  return spec;
}

function floatOf(t: Tensor, what: string): StorageType {
  if (t.dtype !== "f32" && t.dtype !== "f16") {
    throw new TypeError(`${what} must be f32 or f16, got ${t.dtype}`);
  }
  return t.dtype;
}

/** Records [B, R, C] → [B, C, R] (channels last → first, or back with R and C swapped). */
export function transposeImage(rec: Recorder, x: Tensor, B: number, R: number, C: number): Tensor {
  const dt = floatOf(x, "transposeImage: x");
  if (x.size !== B * R * C) {
    throw new RangeError(`transposeImage: x [${x.shape}] is not [${B}, ${R}, ${C}]`);
  }
  const out = createTensor(rec.runtime, [B, C, R], dt);
  if (out.size > 0) rec.dispatch(transposeSpec(dt), { r: R, c: C, n: out.size }, [x, out]);
  return out;
}

/** Options of {@linkcode conv3x3}. */
export interface Conv3x3Options {
  /** Bias [N]. */
  bias?: Tensor;
  /** Read x upsampled 2× by nearest neighbour (the output is 2H × 2W). */
  upsample?: boolean;
  /** Added to the output: [B·H'·W', N] (a residual block's shortcut). */
  residual?: Tensor;
  /** Bytes one im2col chunk may take; default the binding limit, at most 128 MiB. */
  chunkBytes?: number;
  /** "explicit": write the im2col chunks even where the GEMM could read x directly. */
  im2col?: "implicit" | "explicit";
}

/**
 * Records a 3×3 convolution (stride 1, zero padding 1) of channels-last x [B·H·W, C] with
 * w [N, 9·C] (conv3x3WeightNhwc's layout): [B·H'·W', N]. Output rows go in chunks whose
 * im2col fits `chunkBytes`; each chunk is one GEMM.
 */
export function conv3x3(
  rec: Recorder,
  x: Tensor,
  s: ImageShape,
  w: Tensor,
  o: Conv3x3Options = {},
): Tensor {
  const dt = floatOf(x, "conv3x3: x");
  if (x.size !== s.B * s.H * s.W * s.C) {
    throw new RangeError(`conv3x3: x [${x.shape}] is not [${s.B}, ${s.H}, ${s.W}, ${s.C}]`);
  }
  const K = 9 * s.C;
  if (w.shape.length !== 2 || w.shape[1] !== K) {
    throw new RangeError(
      `conv3x3: w must be [N, ${K}] (9 taps × ${s.C} channels), got [${w.shape}]`,
    );
  }
  const N = w.shape[0];
  if (o.im2col !== "explicit" && dt === "f32" && s.C % 4 === 0) {
    const im2col = { ...s, upsample: !!o.upsample };
    return gemm(rec, x, w, { bias: o.bias, residual: o.residual, im2col });
  }
  const up = o.upsample ? 1 : 0;
  const [Ho, Wo] = [s.H << up, s.W << up];
  const rt = rec.runtime;
  const limit = Math.min(o.chunkBytes ?? 128 * 2 ** 20, rt.bindingLimit);
  const rowBytes = Wo * K * (dt === "f16" ? 2 : 4);
  const rows = Math.max(1, Math.min(Ho, Math.floor(limit / rowBytes)));
  if (rowBytes > rt.bindingLimit) {
    throw new RangeError(
      `conv3x3: one output row's im2col (${Wo} × ${K}) is over the binding limit of ${rt.bindingLimit} bytes`,
    );
  }
  const M = s.B * Ho * Wo;
  if (o.residual && o.residual.size !== M * N) {
    throw new RangeError(`conv3x3: residual must be [${M}, ${N}], got [${o.residual.shape}]`);
  }
  const whole = rows === Ho && s.B === 1;
  const out = createTensor(rt, [M, N], dt);
  try {
    for (let b = 0; b < s.B; b++) {
      for (let r0 = 0; r0 < Ho; r0 += rows) {
        const n = Math.min(rows, Ho - r0);
        const col = createTensor(rt, [n * Wo, K], dt);
        rec.dispatch(im2colSpec(dt), { b, row0: r0, s, up, n: col.size }, [x, col]);
        // The chunk's output pixels, as rows of the output (and of the residual).
        const run: [number, number][] = [[(b * Ho + r0) * Wo, n * Wo]];
        const res = o.residual && !whole ? gatherRowRuns(rec, o.residual, M, run) : undefined;
        const y = gemm(rec, col, w, {
          bias: o.bias,
          residual: whole ? o.residual : res,
          out: whole ? out : undefined,
        });
        col.release();
        res?.release();
        if (!whole) {
          scatterRowRuns(rec, y, out, run);
          y.release();
        }
      }
    }
  } catch (e) {
    out.release();
    throw e;
  }
  return out;
}

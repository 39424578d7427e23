/**
 * `deno task doctor`'s self-check of the VAE decoder's kernels against their CPU references
 * (runtime/reference/conv.ts): the 3×3 convolution both ways (the GEMM reading the image as
 * its im2col; im2col written out), GroupNorm + SiLU, and the channels-last transpose.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import {
  conv3x3Ref,
  conv3x3WeightNhwc,
  groupNormRef,
  type ImageShape,
  transposeRef,
} from "../reference/conv.ts";
import { conv3x3, transposeImage } from "./conv.ts";
import { groupNorm } from "./group_norm.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";

/** The VAE kernels on a 2 × 6 × 5 × 8 image, upsampled for the convolution. */
export async function convSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const g = new Prng(31);
  const s: ImageShape = { B: 2, H: 6, W: 5, C: 8 };
  const N = 12;
  const xs = g.normals(s.B * s.H * s.W * s.C);
  const wn = conv3x3WeightNhwc(g.normals(N * s.C * 9).map((v) => v / 8), N, s.C);
  const bias = g.normals(N);
  const gamma = g.normals(s.C);
  const beta = g.normals(s.C);
  const x = uploadTensor(rt, xs, [s.B * s.H * s.W, s.C]);
  const w = uploadTensor(rt, wn, [N, 9 * s.C]);
  const b = uploadTensor(rt, bias, [N]);
  const gt = uploadTensor(rt, gamma, [s.C]);
  const bt = uploadTensor(rt, beta, [s.C]);
  try {
    const run = async (f: (rec: Recorder) => Tensor) => {
      const rec = new Recorder(rt);
      const y = f(rec);
      await rec.submit();
      const v = await readTensor(rt, y);
      y.release();
      return v;
    };
    const out: SelfCheckResult[] = [];
    const convRef = conv3x3Ref(xs, s, wn, bias, N, true);
    for (const im2col of ["implicit", "explicit"] as const) {
      const got = await run((rec) => conv3x3(rec, x, s, w, { bias: b, upsample: true, im2col }));
      const err = maxError(got, convRef);
      out.push({ name: `conv3x3_${im2col}_f32`, ok: err <= 1e-4, maxError: err, tolerance: 1e-4 });
    }
    const gn = await run((rec) => groupNorm(rec, x, s, gt, bt, { groups: 4, silu: true }));
    const gnErr = maxError(gn, groupNormRef(xs, s, 4, gamma, beta, 1e-6, true));
    out.push({ name: "group_norm_silu_f32", ok: gnErr <= 1e-4, maxError: gnErr, tolerance: 1e-4 });
    const tr = await run((rec) => transposeImage(rec, x, s.B, s.H * s.W, s.C));
    const trErr = maxError(tr, transposeRef(xs, s.B, s.H * s.W, s.C));
    out.push({ name: "transpose_f32", ok: trErr === 0, maxError: trErr, tolerance: 0 });
    return out;
  } finally {
    for (const t of [x, w, b, gt, bt]) t.release();
  }
}

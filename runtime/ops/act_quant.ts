/**
 * The per-token activation quantizer on the GPU (wgsl/act_quant.wgsl): x [M, K] (f32 or
 * f16) → int8 codes four to a u32 word [M, ⌈K/4⌉] and a scale Δ_t per token (f32), or one
 * per group of G channels ([M, K/G]), at 8, 6 or 4 bits in int8 containers, so dot4I8Packed
 * serves every width. Also the error accumulator behind `quantize --report`.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { grid1d, type KernelSpec, Recorder } from "../gpu/kernel.ts";
import {
  createTensor,
  readTensor,
  readTensorRaw,
  type Tensor,
  uploadTensor,
} from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import type { ActGrouping, QuantizedActivations } from "../quant/transform.ts";
import { actQmax, actQuantRef } from "../reference/act_quant.ts";
import src from "../../wgsl/act_quant.wgsl" with { type: "text" };
import gridSrc from "../../wgsl/quant_grid.wgsl" with { type: "text" };

/** Activation bit widths (int8 containers). */
export const ACT_BITS: readonly number[] = [4, 6, 8];

/**
 * Kernel layouts: "rows" (one invocation per token: CPU adapters) or "wg" (a workgroup per
 * token: GPUs).
 */
export type ActQuantVersion = "rows" | "wg";

/** Options of {@linkcode actQuant}. */
export interface ActQuantOptions {
  /** Force a layout; default "rows" on CPU adapters, "wg" on GPUs (ignored with a group). */
  version?: ActQuantVersion;
  /**
   * Channels a scale: a multiple of 4 dividing K, each token's runs of `group` channels
   * quantized on their own Δ; default the whole token.
   */
  group?: number;
  /**
   * With a group: each group's levels run from its min to its max (a zero point z beside
   * Δ: scales [2, M, K/G], the Δs then the zs); default symmetric.
   */
  asym?: boolean;
}

interface Params {
  M: number;
  K: number;
  bits: number;
  slot: number;
}

type Entry = "quant_rows4" | "quant_rows1" | "quant_wg" | "quant_groups" | "error_acc";
const WG = 64;
const specs = new Map<string, KernelSpec<Params>>();

function spec(storage: StorageType, entry: Entry, group = 0, asym = false): KernelSpec<Params> {
  const key = `${storage}:${entry}:${group}:${asym}`;
  let s = specs.get(key);
  if (!s) {
    const c = composeWgsl(src, { storage, libs: [gridSrc] });
    s = {
      name: `act_quant_${entry}_${storage}${group ? `_g${group}` : ""}${asym ? "_asym" : ""}`,
      source: c.source,
      preludeLines: c.preludeLines,
      entryPoint: entry,
      // error_acc leaves binding 2 unused: its slot is bound to x, read-only.
      bindings: entry === "error_acc"
        ? ["uniform", "read", "read", "read_write"]
        : ["uniform", "read", "read_write", "read_write"],
      constants: () => ({ WG, GROUP: group, ASYM: asym ? 1 : 0 }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "u32"],
        values: (p) => [p.M, p.K, Math.ceil(p.K / 4), actQmax(p.bits), p.slot],
      },
      dispatch: (p) =>
        entry === "error_acc"
          ? [1]
          : entry === "quant_wg"
          ? grid1d(p.M)
          : entry === "quant_groups"
          ? grid1d(Math.ceil(p.M * (p.K / group) / WG))
          : grid1d(Math.ceil(p.M / WG)),
    };
    specs.set(key, s);
  }
  return s;
}

function dims(x: Tensor, who: string): [number, number] {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${who}: x must be f32 or f16, got ${x.dtype}`);
  }
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] < 1) {
    throw new RangeError(`${who}: x must be [M, K] with K ≥ 1, got [${x.shape}]`);
  }
  const K = x.shape[x.shape.length - 1];
  return [x.size / K, K];
}

/**
 * Checks a group size against K (see {@linkcode ActQuantOptions.group}; 0 = per token), and
 * that asymmetric levels come with a group.
 */
export function checkActGroup(group: number, K: number, who: string, asym = false): void {
  if (asym && !group) throw new RangeError(`${who}: asym needs a group`);
  if (group === 0) return;
  if (!Number.isInteger(group) || group < 4 || group % 4 !== 0 || K % group !== 0) {
    throw new RangeError(
      `${who}: group must be a multiple of 4 that divides K = ${K}, got ${group}`,
    );
  }
}

/** The scales' shape of M quantized rows: [M] per token, [M, K/G] grouped, [2, M, K/G] asymmetric. */
export function actScaleShape(M: number, K: number, group: number, asym = false): number[] {
  return group ? [...(asym ? [2] : []), M, K / group] : [M];
}

function checkBits(bits: number, who: string): void {
  if (!ACT_BITS.includes(bits)) {
    throw new RangeError(`${who}: bits must be one of ${ACT_BITS.join(", ")}, got ${bits}`);
  }
}

/** Records the per-token quantization of x [M, K] (or [..., K]) at `bits` bits. */
export function actQuant(
  rec: Recorder,
  x: Tensor,
  bits: number,
  opts: ActQuantOptions = {},
): QuantizedActivations {
  const [M, K] = dims(x, "actQuant");
  checkBits(bits, "actQuant");
  const group = opts.group ?? 0;
  const asym = opts.asym ?? false;
  checkActGroup(group, K, "actQuant", asym);
  const rt = rec.runtime;
  const version = opts.version ?? (rt.info.fallback ? "rows" : "wg");
  if (version !== "rows" && version !== "wg") {
    throw new RangeError(`actQuant: version must be "rows" or "wg", got ${version}`);
  }
  const q = createTensor(rt, [M, Math.ceil(K / 4)], "u32");
  const scales = createTensor(rt, actScaleShape(M, K, group, asym), "f32");
  if (M > 0) {
    const entry: Entry = group
      ? "quant_groups"
      : version === "wg"
      ? "quant_wg"
      : K % 4 === 0
      ? "quant_rows4"
      : "quant_rows1";
    const s = spec(x.dtype as StorageType, entry, group, asym);
    rec.dispatch(s, { M, K, bits, slot: 0 }, [x, q, scales]);
  }
  return quantizedActivations(q, scales, bits, K, { group, asym });
}

/** Codes and scales as QuantizedActivations, the grouping fields present only when grouped. */
export function quantizedActivations(
  q: Tensor,
  scales: Tensor,
  bits: number,
  cols: number,
  { group, asym }: ActGrouping,
): QuantizedActivations {
  return { q, scales, bits, cols, ...(group ? { group } : {}), ...(asym ? { asym } : {}) };
}

/**
 * Records acc[2·slot] += Σ(x − x̂)², acc[2·slot + 1] += Σx² for the per-token (or per-group)
 * quantization of x at `bits` bits (acc: f32 [≥ 2·slot + 2], zeroed by the caller).
 */
export function actQuantError(
  rec: Recorder,
  x: Tensor,
  bits: number,
  acc: Tensor,
  slot: number,
  group = 0,
  asym = false,
): void {
  const [M, K] = dims(x, "actQuantError");
  checkBits(bits, "actQuantError");
  checkActGroup(group, K, "actQuantError", asym);
  if (acc.dtype !== "f32" || acc.size < 2 * slot + 2 || !Number.isInteger(slot) || slot < 0) {
    throw new RangeError(`actQuantError: acc must be f32 with room for slot ${slot}`);
  }
  if (M === 0) return;
  const s = spec(x.dtype as StorageType, "error_acc", group, asym);
  rec.dispatch(s, { M, K, bits, slot }, [x, x, acc]);
}

/** The result shape of a self-check (see runtime/ops/selfcheck.ts). */
interface CheckResult {
  name: string;
  ok: boolean;
  maxError: number;
  tolerance: number;
  note?: string;
}

/**
 * Self-check for `deno task doctor`: A8 and A4 at an odd shape against the CPU reference;
 * the error is the largest code difference (0 expected; 1 allowed only at a rounding tie).
 */
export async function actQuantSelfCheck(rt: Runtime): Promise<CheckResult[]> {
  const [M, K] = [5, 37];
  const xs = new Prng(31).normals(M * K).map((v) => 3 * v);
  const out: CheckResult[] = [];
  for (const bits of [8, 4]) {
    const rec = new Recorder(rt);
    const x = uploadTensor(rt, xs, [M, K]);
    const a = actQuant(rec, x, bits);
    await rec.submit();
    const words = (await readTensorRaw(rt, a.q)) as Uint32Array;
    const scales = await readTensor(rt, a.scales);
    const ref = actQuantRef(xs, M, K, bits);
    let err = 0;
    for (let i = 0; i < ref.words.length; i++) {
      for (let b = 0; b < 4; b++) {
        const g = (words[i] << (24 - 8 * b)) >> 24;
        const r = (ref.words[i] << (24 - 8 * b)) >> 24;
        const k = (i % Math.ceil(K / 4)) * 4 + b;
        const tie = k < K &&
          Math.abs(Math.abs(ref.scaled[Math.floor(i / Math.ceil(K / 4)) * K + k] % 1) - 0.5) < 1e-4;
        if (!tie) err = Math.max(err, Math.abs(g - r));
      }
    }
    for (let m = 0; m < M; m++) {
      err = Math.max(err, Math.abs(scales[m] - ref.scales[m]) / ref.scales[m] > 1e-6 ? 1 : 0);
    }
    for (const t of [x, a.q, a.scales]) t.release();
    out.push({ name: `act_quant_a${bits}`, ok: err === 0, maxError: err, tolerance: 0 });
  }
  return out;
}

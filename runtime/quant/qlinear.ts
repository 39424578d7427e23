/**
 * Quantized linear layers: {@linkcode QuantLinear} implements the model's `Linear` seam
 * (runtime/model/linear.ts) with a quantized weight — forward = [CFG delta] → [centre] →
 * transform → per-token quantize → integer GEMM [→ CFG combine] (A4/A6/A8), or transform →
 * weight-only GEMM (A16), [+ the low-rank branch (x·Aᵀ)·Bᵀ on the unquantized input] — and the
 * identity {@linkcode ActivationTransform} ("none"), the plain per-token quantizer.
 *
 * @module
 */
import type { QuantizedWeight } from "../../plugins/types.ts";
import type { Runtime } from "../gpu/device.ts";
import type { Recorder } from "../gpu/kernel.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import type { Linear, LinearEpilogue, RowScope } from "../model/linear.ts";
import { centerActivations } from "../ops/act_center.ts";
import { cfgCombine, cfgDelta } from "../ops/cfg_delta.ts";
import { ACT_BITS, actQuant, type ActQuantVersion, checkActGroup } from "../ops/act_quant.ts";
import { elementwise } from "../ops/elementwise.ts";
import { LOW_RANK_MAX, lowRankAdd, qgemmIntLowRank } from "../ops/low_rank.ts";
import {
  type DotImpl,
  expandIntTables,
  qgemmA16,
  type QGemmA16Version,
  qgemmInt,
  type QGemmIntVersion,
  type QWeightGpu,
  uploadQWeight,
} from "../ops/qgemm.ts";
import type { CenterMode } from "../reference/act_center.ts";
import type { ActGrouping, ActivationTransform, QuantizedActivations } from "./transform.ts";

/** The identity transform: x unchanged, quantized per token (runtime/ops/act_quant.ts). */
export class IdentityTransform implements ActivationTransform {
  readonly name = "none";
  #version: ActQuantVersion | undefined;

  /** `version` forces the quantizer's layout (tests); default per adapter. */
  constructor(version?: ActQuantVersion) {
    this.#version = version;
  }

  /** A copy of x (callers own and release what apply returns). */
  apply(rec: Recorder, x: Tensor): Tensor {
    return elementwise(rec, "copy", x);
  }

  /** Per-token (or per-group) quantization of x. */
  applyQuant(rec: Recorder, x: Tensor, bits: number, g: ActGrouping = {}): QuantizedActivations {
    return actQuant(rec, x, bits, { version: this.#version, ...g });
  }

  /** Nothing to free. */
  release(): void {}
}

/** Activation bits of a quantized linear: 16 = weight-only. */
export type ActBits = 4 | 6 | 8 | 16;

/** The activation bit widths, for validation and help. */
export const ABITS: readonly ActBits[] = [4, 6, 8, 16];

/** Options of {@linkcode QuantLinear}. */
export interface QuantLinearOptions {
  /** Activation bits; 16 = weight-only (A16). */
  abits: ActBits;
  /** Storage type of activations (and the bias); default f32. */
  dtype?: "f32" | "f16";
  /** The layer's input transform (a rotation plugin's); default the identity. */
  transform?: ActivationTransform;
  /** Weight-only GEMM version (tests, benchmarks); default per adapter. */
  a16Version?: QGemmA16Version;
  /** Integer GEMM version (tests, benchmarks); default per adapter. */
  intVersion?: QGemmIntVersion;
  /** The integer GEMM's int8 dot product (tests, benchmarks); default per adapter. */
  dot?: DotImpl;
  /**
   * Centre each sample's input (before the transform and the quantizer) by the mean or
   * midrange of its tokens, and add the centre's product with the weight back in float;
   * A4/A6/A8, and only in calls whose epilogue gives `rowsPerSample` (a token-wise input:
   * a per-sample row, such as adaLN's conditioning, would be all centre). Default none.
   */
  center?: CenterMode;
  /**
   * Channels an activation scale: each token's runs of `actGroup` input channels (a
   * multiple of 4 dividing K; on GPUs of the integer GEMM's 16-channel tile: plans take
   * multiples of 16) get their own Δ, in the input transform's kernel
   * (`applyQuant`'s grouping). Default the whole token.
   */
  actGroup?: number;
  /** With `actGroup`: each group's levels from its min to its max (a zero point each). */
  actAsym?: boolean;
  /**
   * In calls whose epilogue says `cfgPair`, quantize [uncond; cond − uncond] and add the
   * uncond half's product back to the cond half in float (runtime/ops/cfg_delta.ts): the
   * difference guidance amplifies gets its own scales. A4/A6/A8; default off.
   */
  cfgDelta?: boolean;
  /**
   * A low-rank branch (runtime/quant/low_rank.ts): A [R, K] and B [N, R] row-major, the layer
   * computes Q(x)·Q(E)ᵀ + (x·Aᵀ)·Bᵀ, the branch on the unquantized input. Default none.
   */
  lowRank?: { a: Float32Array; b: Float32Array };
}

/** A linear layer with a quantized weight. */
export class QuantLinear implements Linear {
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Activation bits (16 = weight-only). */
  readonly abits: ActBits;
  /** Weight bits. */
  readonly wbits: number;
  readonly rowScope: RowScope;
  #w: QWeightGpu;
  readonly #rt: Runtime;
  readonly #b: Tensor | undefined;
  readonly #o: QuantLinearOptions;
  /** The low-rank branch's A [R, K] and B [N, R]. */
  readonly #lr: { a: Tensor; b: Tensor } | undefined;

  /** Uploads the codes and the parameters the chosen path needs, and the bias. */
  constructor(
    rt: Runtime,
    name: string,
    q: QuantizedWeight,
    bias: Float32Array | undefined,
    opts: QuantLinearOptions,
  ) {
    if (!ABITS.includes(opts.abits)) {
      throw new RangeError(`${name}: abits must be one of ${ABITS.join(", ")}, got ${opts.abits}`);
    }
    if (bias && bias.length !== q.rows) {
      throw new RangeError(`${name}: bias has ${bias.length} values, the weight ${q.rows} rows`);
    }
    if (opts.actGroup) {
      if (opts.abits === 16) throw new RangeError(`${name}: actGroup needs quantized activations`);
      checkActGroup(opts.actGroup, q.cols, `${name}: actGroup`);
    }
    if (opts.actAsym && !opts.actGroup) throw new RangeError(`${name}: actAsym needs actGroup`);
    this.name = name;
    this.inFeatures = q.cols;
    this.outFeatures = q.rows;
    this.abits = opts.abits;
    this.wbits = q.bits;
    this.#o = opts;
    this.#rt = rt;
    const a16 = opts.abits === 16;
    // What forward couples: a CFG pair's halves (delta), a sample's rows (centres).
    this.rowScope = a16 ? "row" : opts.cfgDelta ? "pair" : opts.center ? "sample" : "row";
    try {
      // Centring computes the centres' product with the weight by the weight-only GEMM.
      this.#w = uploadQWeight(rt, q, { a16: a16 || !!opts.center, int: !a16 });
    } catch (e) {
      throw new RangeError(`${name}: ${(e as Error).message}`);
    }
    this.#b = bias ? uploadTensor(rt, bias, [q.rows], opts.dtype ?? "f32") : undefined;
    const lr = opts.lowRank;
    if (lr) {
      const R = lr.b.length / q.rows;
      if (!Number.isInteger(R) || R < 1 || lr.a.length !== R * q.cols) {
        throw new RangeError(
          `${name}: lowRank must be A [R, ${q.cols}] and B [${q.rows}, R], got ${lr.a.length} and ${lr.b.length} values`,
        );
      }
      if (R > LOW_RANK_MAX) throw new RangeError(`${name}: lowRank ${R} is past ${LOW_RANK_MAX}`);
      const dt = opts.dtype ?? "f32";
      this.#lr = {
        a: uploadTensor(rt, lr.a, [R, q.cols], dt),
        b: uploadTensor(rt, lr.b, [q.rows, R], dt),
      };
    }
  }

  /** Bytes of the weight, bias and low-rank branch on the GPU. */
  get weightBytes(): number {
    return this.#w.byteLength + (this.#b?.byteLength ?? 0) +
      (this.#lr ? this.#lr.a.byteLength + this.#lr.b.byteLength : 0);
  }

  forward(rec: Recorder, x: Tensor, e: LinearEpilogue = {}): Tensor {
    const o = this.#o;
    const t = o.transform;
    const lr = this.#lr;
    const { activation, residual, gate } = e;
    if (this.abits === 16) {
      const xin = t ? t.apply(rec, x) : x;
      // With a branch the GEMM stops at the bias; the branch, on x as it comes, adds
      // (x·Aᵀ)·Bᵀ and applies the rest of the epilogue (the integer paths below fuse it).
      const epi = lr ? { bias: this.#b, out: e.out } : { ...e, bias: this.#b };
      const y = qgemmA16(rec, xin, this.#w, { ...epi, version: o.a16Version });
      if (xin !== x) xin.release();
      if (!lr) return y;
      const rowsPerGate = e.rowsPerGate;
      return lowRankAdd(rec, y, x, lr.a, lr.b, { activation, residual, gate, rowsPerGate });
    }
    if (!ACT_BITS.includes(this.abits)) throw new RangeError(`${this.name}: abits ${this.abits}`);
    const g: ActGrouping = o.actGroup ? { group: o.actGroup, asym: o.actAsym ?? false } : {};
    const quant = (v: Tensor): QuantizedActivations =>
      t ? t.applyQuant(rec, v, this.abits, g) : actQuant(rec, v, this.abits, g);
    // CFG delta: the GEMM sees [u; c − u] with no epilogue; cfgCombine adds u's rows back
    // to the second half's and applies the bias and the epilogue once.
    const pair = !!o.cfgDelta && !!e.cfgPair;
    const b = pair ? undefined : this.#b;
    let bias = b;
    let rowsPerGate = e.rowsPerGate;
    let xa: QuantizedActivations;
    let delta: Tensor | undefined; // [u; c − u], the branch's input under CFG delta
    if (o.center && e.rowsPerSample !== undefined) {
      // x·Wᵀ = (x − c)·Wᵀ + c·Wᵀ: the quantizer sees x − c; c·Wᵀ + b is a per-sample bias.
      const rps = e.rowsPerSample;
      if (e.gate && rowsPerGate !== undefined && rowsPerGate !== rps) {
        throw new RangeError(
          `${this.name}: rowsPerSample ${rps} and rowsPerGate ${rowsPerGate} must agree when centring`,
        );
      }
      const c = centerActivations(rec, x, rps, o.center, pair); // the delta fused in
      xa = quant(c.centred);
      const ct = t ? t.apply(rec, c.centres) : c.centres;
      bias = qgemmA16(rec, ct, this.#w, { bias: b, version: o.a16Version });
      if (ct !== c.centres) ct.release();
      c.centred.release();
      c.centres.release();
      rowsPerGate = rps;
    } else {
      const xin = pair ? cfgDelta(rec, x) : x;
      xa = quant(xin);
      if (lr && pair) delta = xin; // kept for the branch
      else if (xin !== x) xin.release();
    }
    const dtype = x.dtype === "f16" ? "f16" : "f32";
    const igemm = { dtype, version: o.intVersion, dot: o.dot } as const;
    let y: Tensor;
    if (pair) {
      // The product goes where the output goes; the combine finishes it in place. A branch is
      // linear, so it rides on the GEMM's rows [u; c − u] (fused where it can be) and the
      // combine adds u's share back with the rest.
      const gopts = { ...igemm, bias, rowsPerGate, out: e.out };
      let z: Tensor;
      if (lr) {
        const d = delta ?? cfgDelta(rec, x); // centred plans quantized a centred delta
        z = qgemmIntLowRank(rec, xa, this.#w, d, lr.a, lr.b, gopts);
        d.release();
      } else {
        z = qgemmInt(rec, xa, this.#w, gopts);
      }
      y = cfgCombine(rec, z, { bias: this.#b, rowsPerGate, activation, residual, gate });
    } else if (lr) {
      // The branch in the integer GEMM's store where it can be (GPUs), else added after it.
      y = qgemmIntLowRank(rec, xa, this.#w, x, lr.a, lr.b, { ...e, ...igemm, bias, rowsPerGate });
    } else {
      y = qgemmInt(rec, xa, this.#w, { ...e, ...igemm, bias, rowsPerGate });
    }
    xa.q.release();
    xa.scales.release();
    if (bias !== b) bias?.release();
    return x.shape.length === 2 ? y : y.reshape([...x.shape.slice(0, -1), this.outFeatures]);
  }

  /**
   * Readies the weight for the GPU's integer GEMM: a TLQ weight's int8 tables expanded once
   * (qgemm_int.ts expandIntTables) instead of every call; the same sums. Layer factories await
   * it after construction; without it each call expands them.
   */
  async prepare(): Promise<void> {
    if (this.abits === 16) return;
    this.#w = await expandIntTables(this.#rt, this.#w, this.#o.intVersion);
  }

  release(): void {
    this.#w.release();
    this.#b?.release();
    this.#lr?.a.release();
    this.#lr?.b.release();
    this.#o.transform?.release();
  }
}

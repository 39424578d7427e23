/**
 * `quantize --report`: per-layer weight SQNR (from the quantizer) and the error of
 * per-token activation quantization at each quantized layer's input, measured on the
 * GPU over a few calibration prompts and steps (runtime/quant/calibration_run.ts): every
 * quantized layer's input is quantized and dequantized in place of nothing — the FP model
 * runs unchanged — and Σ(x − x̂)², Σx² accumulate on the GPU, read back once at the end.
 * Also the per-layer report's type and the bytes a quantized weight holds on the GPU.
 *
 * @module
 */
import type { QuantizedWeight } from "../../plugins/types.ts";
import type { Runtime } from "../gpu/device.ts";
import type { UploadQWeightOptions } from "../ops/qweight.ts";
import {
  a16Params,
  hasCompactTlq,
  int8Lut,
  isAffineGrouped,
  tlqCompactWords,
} from "../reference/qgemm.ts";
import { createTensor, readTensor, writeTensor } from "../gpu/tensor.ts";
import type { Linear, LinearFactory } from "../model/linear.ts";
import { actQuantError } from "../ops/act_quant.ts";
import type { CenterMode } from "../reference/act_center.ts";
import { CALIBRATION_PROMPTS } from "./calibrate.ts";
import {
  type CalibrationEmbeds,
  type CalibrationSize,
  encoderAndSize,
  type PromptEncoderSource,
  runCalibration,
} from "./calibration_run.ts";
import { quantizerInput } from "./quantizer_input.ts";
import type { ActivationTransform } from "./transform.ts";

/** What quantizing one layer gave. */
export interface LayerReport {
  /** Checkpoint name. */
  name: string;
  /** "fp", or the quantizer. */
  quantizer: string;
  /** Weight bits (0 for fp). */
  wbits: number;
  /** Activation bits (0 for fp). */
  abits: number;
  /** Output features N. */
  out: number;
  /** Input features K. */
  in: number;
  /** Weight SQNR in dB, 10·log10(Σw² / Σ(ŵ − w)²), of the whole W' with a low-rank branch (null for fp). */
  sqnrDb: number | null;
  /** Integer path: ‖s·lut8 − ŵ‖/‖ŵ‖ the int8 re-expression adds (0 exact; null for A16/fp). */
  int8LutError: number | null;
  /** Bytes of the weight matrix in f32. */
  bytesF32: number;
  /** Bytes the kernels hold for it: codes + the path's parameters (f32 for fp). */
  bytes: number;
  /** Quantizer search time (with GPTQ's), ms. */
  ms: number;
  /** GPTQ: output SQNR (dB) on the calibration inputs of plain rounding. */
  outSqnrRtnDb?: number;
  /** GPTQ: output SQNR (dB) on the calibration inputs with GPTQ's codes. */
  outSqnrDb?: number;
  /** Rank of the layer's low-rank branch (absent: none). */
  lowRank?: number;
  /** With a low-rank branch: its share of W''s squared norm (the rest is quantized). */
  lowRankEnergy?: number;
  /** Why it stays FP. */
  reason?: string;
}

/**
 * Weight SQNR in dB, 10·log10(Σsignal² / (Σ(w − ŵ)² − absorbed)) for the quantizer's input w
 * and its dequantized ŵ; `signal` is w unless a low-rank branch holds the rest of the weight,
 * and `absorbed` the squared error that branch took over (refitLowRank).
 */
export function weightSqnr(
  w: Float32Array,
  h: Float32Array,
  signal: Float32Array = w,
  absorbed = 0,
): number {
  let s = 0;
  let e = 0;
  for (let i = 0; i < w.length; i++) {
    s += signal[i] * signal[i];
    e += (w[i] - h[i]) ** 2;
  }
  e = Math.max(e - absorbed, 0);
  return e > 0 ? 10 * Math.log10(s / e) : Infinity;
}

/**
 * Bytes the kernels hold for a quantized weight on the path of `abits`, as uploadQWeight
 * uploads it: TLQ compact (codes + 8 B a row + 4 B of η on both paths) where it can, or
 * with `tlq: "lut"` the tables themselves (MODE 0 / 2).
 */
export function quantizedBytes(
  q: QuantizedWeight,
  abits: number,
  tlq?: UploadQWeightOptions["tlq"],
): number {
  const codes = q.codes.byteLength;
  const compact = tlq === "compact" || (tlq === undefined && hasCompactTlq(q));
  if (compact) return codes + tlqCompactWords(q).byteLength;
  // Weight-only, and uniform groups on the integer path: scale and zero per group (MODE 1/7).
  if (abits === 16 || isAffineGrouped(q)) {
    return codes + a16Params(q).data.byteLength;
  }
  const l = int8Lut(q);
  const extra = l.direct ? 0 : l.zero ? l.zero.byteLength : Math.ceil(l.lut8.byteLength / 4) * 4;
  return codes + l.scale.byteLength + extra;
}

/** The activation-quantization error of one layer's input. */
export interface ActErrorRow {
  /** Relative RMS error ‖x − x̂‖/‖x‖ over every token of every observed call. */
  relErr: number;
  /** The same as an SQNR, dB. */
  sqnrDb: number;
}

/** Options of {@linkcode measureActivationError} (`textEncoder`: a real checkpoint's encoders' folder). */
export interface ActErrorOptions extends PromptEncoderSource, CalibrationSize {
  /** Model folder; default the bundled model. */
  model?: string;
  /** Layers to observe (checkpoint names). */
  layers: readonly string[];
  /** Activation bits (4, 6 or 8). */
  abits: number;
  /** Prompts; default the first two calibration prompts. */
  prompts?: readonly string[];
  /** Precomputed inputs instead of the prompts (FLUX without its text encoders: required). */
  embeds?: CalibrationEmbeds;
  /** Sampler steps per prompt; default 3. */
  steps?: number;
  /** Layers whose input is transformed first (rotations): the error is of quantizing x·T. */
  rotations?: ReadonlyMap<string, { gpu(rt: Runtime): ActivationTransform }>;
  /**
   * The plan centres token-wise inputs (quantize --center): the error is of quantizing
   * (x − c)·T, relative to x·T (the centre itself is added back exactly).
   */
  center?: CenterMode;
  /** The plan's channels an activation scale (quantize --act-group); default one a token. */
  actGroup?: number;
  /** With actGroup: asymmetric groups (quantize --act-asym). */
  actAsym?: boolean;
  /**
   * The plan quantizes a CFG pair's difference (quantize --cfg-delta): in guided calls the
   * error is of quantizing [u; c − u]·T (centred too with `center`), relative to x·T.
   */
  cfgDelta?: boolean;
  /** Progress. */
  onProgress?: (p: { prompt: number; prompts: number; step: number; steps: number }) => void;
}

/** Runs the FP model with an error accumulator on each layer's input; per-layer errors. */
export async function measureActivationError(
  rt: Runtime,
  o: ActErrorOptions,
): Promise<Map<string, ActErrorRow>> {
  const slots = new Map(o.layers.map((n, i) => [n, i]));
  // Two [error, signal] slots a layer: what the plan quantizes (when centred or a CFG
  // delta: not the input), the input's.
  const acc = createTensor(rt, [Math.max(4, 4 * o.layers.length)]);
  const differs = new Set<number>();
  writeTensor(rt, acc, new Float32Array(acc.size));
  try {
    const observe = (inner: LinearFactory): LinearFactory => ({
      create: async (r, src) => {
        const l = await inner.create(r, src);
        const slot = slots.get(src.name);
        if (slot === undefined) return l;
        const t = o.rotations?.get(src.name)?.gpu(r);
        const wrapped: Linear = {
          name: l.name,
          inFeatures: l.inFeatures,
          outFeatures: l.outFeatures,
          weightBytes: l.weightBytes,
          forward: (rec, x, e) => {
            const xt = t ? t.apply(rec, x) : x;
            actQuantError(rec, xt, o.abits, acc, 2 * slot + 1, o.actGroup, o.actAsym);
            if (xt !== x) xt.release();
            const q = quantizerInput(rec, x, e, o); // as QuantLinear forms it
            if (q) {
              const qt = t ? t.apply(rec, q) : q;
              actQuantError(rec, qt, o.abits, acc, 2 * slot, o.actGroup, o.actAsym);
              differs.add(slot);
              if (qt !== q) qt.release();
              q.release();
            }
            return l.forward(rec, x, e);
          },
          release: () => {
            t?.release();
            l.release();
          },
        };
        return wrapped;
      },
    });
    await runCalibration(rt, {
      path: o.model,
      prompts: o.prompts ?? CALIBRATION_PROMPTS.slice(0, 2),
      embeds: o.embeds,
      ...encoderAndSize(o),
      steps: o.steps ?? 3,
      linears: observe,
      onProgress: o.onProgress,
    });
    const sums = await readTensor(rt, acc);
    const out = new Map<string, ActErrorRow>();
    for (const [name, i] of slots) {
      const e = sums[4 * i + (differs.has(i) ? 0 : 2)]; // the error of what the plan quantizes
      const s = sums[4 * i + 3]; // Σ (x·T)² of the input as it is
      const rel = s > 0 ? Math.sqrt(e / s) : 0;
      out.set(name, { relErr: rel, sqnrDb: e > 0 ? 10 * Math.log10(s / e) : Infinity });
    }
    return out;
  } finally {
    acc.release();
  }
}

function fmt(v: number | null | undefined, digits = 2): string {
  if (v === null || v === undefined) return "-";
  if (!Number.isFinite(v)) return String(v);
  return v.toFixed(digits);
}

/** The report as a text table (one line per linear layer, then totals). */
export function formatReport(
  layers: readonly LayerReport[],
  act?: ReadonlyMap<string, ActErrorRow>,
): string {
  // GPTQ runs add the output SQNR on the calibration inputs, plain rounding → GPTQ.
  const gptq = layers.some((l) => l.outSqnrDb !== undefined);
  const head = ["layer", "quant", "W", "A", "N×K", "SQNR dB", "int8 LUT err", "act err", "act dB"];
  if (gptq) head.push("out dB round", "out dB gptq");
  // A low-rank branch: its rank, and the share of each weight it holds in float.
  const lowRank = layers.some((l) => l.lowRankEnergy !== undefined);
  if (lowRank) head.push("branch R", "branch %");
  const rows = layers.map((l) => {
    const a = act?.get(l.name);
    const extra = gptq ? [fmt(l.outSqnrRtnDb), fmt(l.outSqnrDb)] : [];
    const e = l.lowRankEnergy;
    if (lowRank) {
      extra.push(l.lowRank ? String(l.lowRank) : "-", e === undefined ? "-" : (100 * e).toFixed(1));
    }
    return [
      l.name,
      l.quantizer,
      l.wbits ? String(l.wbits) : "-",
      l.abits ? String(l.abits) : "-",
      `${l.out}×${l.in}`,
      fmt(l.sqnrDb),
      l.int8LutError === null ? "-" : l.int8LutError.toExponential(2),
      a ? a.relErr.toExponential(2) : "-",
      a ? fmt(a.sqnrDb) : "-",
      ...extra,
    ];
  });
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => i === 0 ? c.padEnd(w[i]) : c.padStart(w[i])).join("  ");
  const q = layers.filter((l) => l.quantizer !== "fp");
  const f32 = q.reduce((s, l) => s + l.bytesF32, 0);
  const bytes = q.reduce((s, l) => s + l.bytes, 0);
  const sq = q.map((l) => l.sqnrDb ?? 0);
  return [
    line(head),
    ...rows.map(line),
    "",
    `${q.length} quantized layers, ${layers.length - q.length} in FP; ` +
    `weight bytes of the quantized layers ${bytes} vs ${f32} in f32 (1/${
      fmt(f32 / Math.max(1, bytes))
    }); ` +
    `mean weight SQNR ${fmt(sq.reduce((a, b) => a + b, 0) / Math.max(1, sq.length))} dB` +
    (gptq
      ? `; mean output SQNR ${fmt(mean(q, "outSqnrRtnDb"))} → ${
        fmt(mean(q, "outSqnrDb"))
      } dB (GPTQ)`
      : ""),
  ].join("\n");
}

function mean(layers: readonly LayerReport[], key: "outSqnrRtnDb" | "outSqnrDb"): number {
  return layers.reduce((s, l) => s + (l[key] ?? 0), 0) / Math.max(1, layers.length);
}

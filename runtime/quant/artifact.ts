/**
 * The quantized artifact: ONE safetensors file that `generate --model FILE` runs alone.
 *
 * Tensors: `transformer.<name>` — the FP tensors of the transformer as the source stored
 * them; for a quantized layer `transformer.<layer>.qcodes` (U32 [N, words per row]) and
 * `transformer.<layer>.qparam.<key>` (F32: the quantizer's params, e.g. `scale`/`zero`;
 * TLQ: `deltaPos`, `zeroPos`, `deltaNeg`, `zeroNeg` (a row's, or with meta.groupSize a
 * (row, group)'s) with η in the plan's layer meta, its
 * `lut` rebuilt on load — artifacts of earlier versions also store `lut`, used as stored)
 * in place of its weight (the bias stays `transformer.<layer>.bias`);
 * `transformer.<layer>.rot.<key>` the layer's rotation tensors; `transformer.<layer>.lowrank.a`
 * (F32 [R, in]) and `.b` ([out, R]) its low-rank branch when the plan gives it a rank (layer
 * `lowRank`, runtime/quant/low_rank.ts); `text_encoder.<name>` the
 * caption encoder of the source model when it has one; `attention.<name>` (U32) the
 * attention plugin's plan (PARO's permutations and masks).
 * Metadata: `webdit.artifact` (format version), `webdit.plan` (runtime/quant/plan.ts),
 * `webdit.transformer_config`, `webdit.family` (the model plugin: "pixart", "flux"), and
 * `webdit.text_encoder_config` + `webdit.vocab` with the encoder, `webdit.attention`
 * (`{ plugin, meta }`) with an attention plan, `webdit.scheduler_config` with the source's
 * scheduler/scheduler_config.json (FLUX's flow-matching shift).
 *
 * runtime/quant/artifact_pipeline.ts loads one as a pipeline of its family (config
 * `_class_name`: PixArt, or FLUX — no caption encoder: `generate --caption-embeds`).
 *
 * @module
 */
import type {
  AttentionImpl,
  AttentionPlanData,
  AttentionPlugin,
  QuantizedWeight,
} from "../../plugins/types.ts";
import { createDefaultRegistry } from "../builtins.ts";
import { CheckpointError } from "../errors.ts";
import { parseJson } from "../io/json.ts";
import type { Runtime } from "../gpu/device.ts";
import {
  openSafetensors,
  type SafetensorsFile,
  type TensorInfo,
  type TensorSource,
} from "../io/safetensors.ts";
import { DenseLinear, type Linear, type LinearFactory } from "../model/linear.ts";
import { noteLutFromParams } from "../reference/qgemm.ts";
import { lutGroupSize } from "../../plugins/quantizers/tlq.ts";
import { codesName, lowRankName, META, paramName, PREFIX, rotationName } from "./artifact_names.ts";
import { rebuildTlqLut } from "./artifact_tlq.ts";
import { wordsPerRow } from "./pack.ts";
import { ARTIFACT_VERSION, type LayerPlan, parsePlan, type QuantPlan } from "./plan.ts";
import { type ActBits, QuantLinear } from "./qlinear.ts";
import { loadLayerRotation } from "./rotation.ts";
import type { ActivationTransform } from "./transform.ts";
export { codesName, lowRankName, META, paramName, PREFIX, rotationName } from "./artifact_names.ts";
export { storedParams } from "./artifact_tlq.ts";

/** True when `path` is a safetensors file holding a webdit plan (reads the header only). */
export async function isArtifact(path: string): Promise<boolean> {
  if (!path.endsWith(".safetensors")) return false;
  const st = await Deno.stat(path).catch(() => null);
  if (!st?.isFile) return false;
  try {
    const f = await openSafetensors(path);
    f.close();
    return f.metadata[META.plan] !== undefined;
  } catch {
    return false;
  }
}

/**
 * A view of the artifact's tensors under one prefix, as a model loader expects them.
 * `synthetic` names (a quantized layer's `.weight`) read as empty arrays: the artifact's
 * LinearFactory builds those layers from their codes instead.
 */
class PrefixSource implements TensorSource {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  #file: SafetensorsFile;
  #prefix: string;
  #synthetic: Set<string>;

  constructor(file: SafetensorsFile, prefix: string, synthetic: Map<string, number[]> = new Map()) {
    this.#file = file;
    this.#prefix = prefix;
    this.path = file.path;
    this.metadata = file.metadata;
    const t = new Map<string, TensorInfo>();
    for (const [name, info] of file.tensors) {
      if (name.startsWith(prefix)) t.set(name.slice(prefix.length), info);
    }
    for (const [name, shape] of synthetic) {
      t.set(name, {
        dtype: "F32",
        shape,
        byteLength: 0,
        offset: 0,
        dataOffsets: [0, 0],
        file: file.path,
      });
    }
    this.tensors = t;
    this.#synthetic = new Set(synthetic.keys());
  }

  readRaw(name: string): Promise<Uint8Array> {
    if (this.#synthetic.has(name)) return Promise.resolve(new Uint8Array(0));
    return this.#file.readRaw(this.#prefix + name);
  }
  readRange(name: string, begin: number, end: number): Promise<Uint8Array> {
    if (this.#synthetic.has(name)) return Promise.resolve(new Uint8Array(0));
    return this.#file.readRange(this.#prefix + name, begin, end);
  }
  readF32(name: string): Promise<Float32Array> {
    if (this.#synthetic.has(name)) return Promise.resolve(new Float32Array(0));
    return this.#file.readF32(this.#prefix + name);
  }
  readF16Bits(name: string): Promise<Uint16Array> {
    if (this.#synthetic.has(name)) return Promise.resolve(new Uint16Array(0));
    return this.#file.readF16Bits(this.#prefix + name);
  }
  close(): void {}
  [Symbol.dispose](): void {}
}

/** Builds a layer's online input transform from its stored rotation (none → undefined). */
export type RotationLoader = (
  rt: Runtime,
  layer: string,
  kind: string,
  tensors: Record<string, { dtype: string; shape: readonly number[]; data: Uint8Array }>,
  cols: number,
) => ActivationTransform | undefined;

/** The built-in rotations (runtime/quant/rotation.ts) as a {@linkcode RotationLoader}. */
export const defaultRotationLoader: RotationLoader = (rt, _layer, kind, tensors, cols) =>
  loadLayerRotation(kind, tensors, cols).gpu(rt);

/**
 * A weight's stored parameters decode its codes: a LUT-coded weight (TLQ with its table,
 * kmeans, any plugin storing levels) has `qparam.lut` of 2^b values a row (group), an affine
 * one (uniform, any plugin storing scale and zero) `qparam.scale` and `qparam.zero` (their
 * sizes are checked where they are read). Told apart by what is stored, not by the plugin's
 * name, so a registered plugin of either form loads.
 */
function checkCodeParams(path: string, layer: string, q: QuantizedWeight): void {
  const { lut, scale, zero } = q.params;
  if (lut === undefined) {
    if (scale !== undefined && zero !== undefined) return;
    // Neither form complete: name what is missing (a weight with no affine part, the table).
    const missing = scale === undefined && zero === undefined
      ? "lut"
      : scale === undefined
      ? "scale"
      : "zero";
    throw new CheckpointError(
      path,
      `missing tensor (a ${q.quantizer} weight needs qparam.lut, or qparam.scale and qparam.zero)`,
      paramName(layer, missing),
    );
  }
  try {
    lutGroupSize(q);
  } catch (e) {
    throw new CheckpointError(path, (e as Error).message, paramName(layer, "lut"));
  }
}

/** An opened artifact: the file, its validated plan and configs. */
export class Artifact {
  /** The file. */
  readonly file: SafetensorsFile;
  /** The validated plan. */
  readonly plan: QuantPlan;
  /** The transformer's config.json, parsed as JSON. */
  readonly transformerConfig: unknown;

  /** Use {@linkcode openArtifact}. */
  constructor(file: SafetensorsFile, plan: QuantPlan, transformerConfig: unknown) {
    this.file = file;
    this.plan = plan;
    this.transformerConfig = transformerConfig;
  }

  /** The path. */
  get path(): string {
    return this.file.path;
  }

  /** Reads one quantized layer back as a QuantizedWeight (shapes checked). */
  async quantizedWeight(name: string): Promise<QuantizedWeight> {
    const l = this.plan.layers[name];
    if (!l || l.quantizer === "fp") {
      throw new CheckpointError(this.path, "is not a quantized layer of the plan", name);
    }
    const cn = codesName(name);
    const info = this.file.tensors.get(cn);
    const wpr = wordsPerRow(l.in, l.wbits);
    if (!info) throw new CheckpointError(this.path, "missing tensor", cn);
    if (
      info.dtype !== "U32" || info.shape.length !== 2 || info.shape[0] !== l.out ||
      info.shape[1] !== wpr
    ) {
      throw new CheckpointError(
        this.path,
        `expected U32 [${l.out}, ${wpr}] for ${l.wbits}-bit codes of [${l.out}, ${l.in}], got ${info.dtype} [${info.shape}]`,
        cn,
      );
    }
    const raw = await this.file.readRaw(cn);
    const codes = new Uint32Array(raw.slice().buffer);
    const params: Record<string, Float32Array> = {};
    const prefix = paramName(name, "");
    for (const [t, ti] of this.file.tensors) {
      if (!t.startsWith(prefix)) continue;
      if (ti.dtype !== "F32") {
        throw new CheckpointError(this.path, `expected F32, got ${ti.dtype}`, t);
      }
      params[t.slice(prefix.length)] = await this.file.readF32(t);
    }
    const rebuilt = l.quantizer === "tlq" && params.lut === undefined;
    if (rebuilt) params.lut = rebuildTlqLut(this.path, name, params, l);
    const q: QuantizedWeight = {
      quantizer: l.quantizer,
      bits: l.wbits,
      rows: l.out,
      cols: l.in,
      codes,
      params,
      meta: l.meta ?? {},
    };
    if (rebuilt) noteLutFromParams(q);
    else checkCodeParams(this.path, name, q);
    return q;
  }

  /** A layer's low-rank branch A [R, in] and B [out, R] (shapes checked), if the plan has one. */
  async lowRank(name: string): Promise<{ a: Float32Array; b: Float32Array } | undefined> {
    const l = this.plan.layers[name];
    const R = l?.lowRank;
    if (!R) return undefined;
    const read = async (key: "a" | "b", shape: number[]) => {
      const t = lowRankName(name, key);
      const info = this.file.tensors.get(t);
      if (!info) throw new CheckpointError(this.path, `missing tensor (the plan's rank ${R})`, t);
      if (info.dtype !== "F32" || `${info.shape}` !== `${shape}`) {
        throw new CheckpointError(
          this.path,
          `expected F32 [${shape}], got ${info.dtype} [${info.shape}]`,
          t,
        );
      }
      return await this.file.readF32(t);
    };
    return { a: await read("a", [R, l.in]), b: await read("b", [l.out, R]) };
  }

  /** A layer's rotation tensors (raw), by key. */
  rotationTensors(
    name: string,
  ): Record<string, { dtype: string; shape: readonly number[]; info: TensorInfo }> {
    const prefix = rotationName(name, "");
    const out: Record<string, { dtype: string; shape: readonly number[]; info: TensorInfo }> = {};
    for (const [t, ti] of this.file.tensors) {
      if (t.startsWith(prefix)) {
        out[t.slice(prefix.length)] = { dtype: ti.dtype, shape: ti.shape, info: ti };
      }
    }
    return out;
  }

  /** The transformer's tensors as its loader expects them (quantized weights synthesized). */
  transformerSource(): TensorSource {
    const synthetic = new Map<string, number[]>();
    for (const [name, l] of Object.entries(this.plan.layers)) {
      if (l.quantizer !== "fp") synthetic.set(`${name}.weight`, this.#weightShape(l));
    }
    return new PrefixSource(this.file, PREFIX.transformer, synthetic);
  }

  /** The caption encoder's tensors. */
  encoderSource(): TensorSource {
    return new PrefixSource(this.file, PREFIX.encoder);
  }

  #weightShape(l: LayerPlan): number[] {
    return l.shape ?? [l.out, l.in]; // a conv weight (patch embedding) keeps its 4-D shape
  }

  /** The attention plugin's self-attention from the stored plan, or undefined (dense). */
  async attention(rt: Runtime): Promise<AttentionImpl | undefined> {
    const text = this.file.metadata[META.attention];
    if (text === undefined) return undefined;
    const field = `__metadata__.${META.attention}`;
    const raw = parseJson(text, this.path, field) as { plugin?: unknown; meta?: unknown };
    if (typeof raw?.plugin !== "string") {
      throw new CheckpointError(this.path, "must name its plugin", `${field}.plugin`);
    }
    let plugin: AttentionPlugin;
    try {
      plugin = createDefaultRegistry().get("attention", raw.plugin);
    } catch (e) {
      throw new CheckpointError(this.path, (e as Error).message, `${field}.plugin`);
    }
    const tensors: AttentionPlanData["tensors"] = {};
    for (const [t, ti] of this.file.tensors) {
      if (!t.startsWith(PREFIX.attention)) continue;
      if (ti.dtype !== "U32") {
        throw new CheckpointError(this.path, `expected U32, got ${ti.dtype}`, t);
      }
      const b = await this.file.readRaw(t);
      tensors[t.slice(PREFIX.attention.length)] = {
        data: new Uint32Array(b.slice().buffer),
        shape: [...ti.shape],
        dtype: "u32",
      };
    }
    try {
      return plugin.create(rt, { meta: raw.meta, tensors });
    } catch (e) {
      throw new CheckpointError(this.path, (e as Error).message, field);
    }
  }

  /** The LinearFactory of the plan: quantized layers from their codes, FP layers dense. */
  linears(dtype: "f32" | "f16", rotations: RotationLoader = defaultRotationLoader): LinearFactory {
    return {
      create: async (rt, src): Promise<Linear> => {
        const l = this.plan.layers[src.name];
        const field = `webdit.plan.layers.${src.name}`;
        if (!l) {
          throw new CheckpointError(
            this.path,
            "the model has this linear; the plan does not",
            field,
          );
        }
        if (l.out !== src.outFeatures || l.in !== src.inFeatures) {
          throw new CheckpointError(
            this.path,
            `plan says [${l.out}, ${l.in}], the model [${src.outFeatures}, ${src.inFeatures}]`,
            field,
          );
        }
        if (l.quantizer === "fp") return new DenseLinear(rt, src, dtype);
        const q = await this.quantizedWeight(src.name);
        const lowRank = await this.lowRank(src.name);
        let transform: ActivationTransform | undefined;
        if (l.rotation !== "none") {
          if (!rotations) {
            throw new CheckpointError(
              this.path,
              `rotation "${l.rotation}" is not available in this build`,
              field,
            );
          }
          const raw: Record<string, { dtype: string; shape: readonly number[]; data: Uint8Array }> =
            {};
          for (const [k, t] of Object.entries(this.rotationTensors(src.name))) {
            raw[k] = {
              dtype: t.dtype,
              shape: t.shape,
              data: await this.file.readRaw(rotationName(src.name, k)),
            };
          }
          try {
            transform = rotations(rt, src.name, l.rotation, raw, l.in);
          } catch (e) {
            throw new CheckpointError(this.path, (e as Error).message, rotationName(src.name, ""));
          }
        }
        let ql: QuantLinear | undefined;
        try {
          ql = new QuantLinear(rt, src.name, q, src.bias, {
            abits: l.abits as ActBits,
            dtype,
            transform,
            center: l.abits < 16 ? this.plan.settings.center : undefined,
            actGroup: l.abits < 16 ? this.plan.settings.actGroup : undefined,
            actAsym: l.abits < 16 ? this.plan.settings.actAsym : undefined,
            cfgDelta: l.abits < 16 ? this.plan.settings.cfgDelta : undefined,
            lowRank,
          });
          await ql.prepare();
          return ql;
        } catch (e) {
          if (ql) ql.release();
          else transform?.release();
          throw new CheckpointError(this.path, (e as Error).message, codesName(src.name));
        }
      },
    };
  }

  /** Closes the file. */
  close(): void {
    this.file.close();
  }
}

/**
 * Opens and validates an artifact: the format version, the plan, the configs.
 * @throws {CheckpointError} naming the file and the field.
 */
export async function openArtifact(path: string): Promise<Artifact> {
  const file = await openSafetensors(path);
  try {
    const m = file.metadata;
    const v = m[META.version];
    if (v === undefined) {
      throw new CheckpointError(
        path,
        "missing: not a webdit quantized artifact",
        `__metadata__.${META.version}`,
      );
    }
    if (Number(v) !== ARTIFACT_VERSION) {
      throw new CheckpointError(
        path,
        `is ${v}; this build reads version ${ARTIFACT_VERSION}`,
        `__metadata__.${META.version}`,
      );
    }
    const plan = parsePlan(m[META.plan], path);
    const cfgText = m[META.transformerConfig];
    if (cfgText === undefined) {
      throw new CheckpointError(path, "missing", `__metadata__.${META.transformerConfig}`);
    }
    const cfg = parseJson(cfgText, path, `__metadata__.${META.transformerConfig}`);
    for (const [name, l] of Object.entries(plan.layers)) {
      if (l.quantizer === "fp") {
        if (!file.tensors.has(`${PREFIX.transformer}${name}.weight`)) {
          throw new CheckpointError(
            path,
            "missing tensor of an FP layer",
            `${PREFIX.transformer}${name}.weight`,
          );
        }
      } else if (!file.tensors.has(codesName(name))) {
        throw new CheckpointError(path, "missing tensor of a quantized layer", codesName(name));
      }
    }
    return new Artifact(file, plan, cfg);
  } catch (e) {
    file.close();
    throw e;
  }
}

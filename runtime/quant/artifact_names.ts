/**
 * The names inside an artifact (runtime/quant/artifact.ts): its metadata keys and the tensor
 * names of a quantized layer's codes, parameters, rotation and low-rank branch.
 *
 * @module
 */

/** Metadata keys of an artifact. */
export const META = {
  version: "webdit.artifact",
  plan: "webdit.plan",
  transformerConfig: "webdit.transformer_config",
  encoderConfig: "webdit.text_encoder_config",
  vocab: "webdit.vocab",
  attention: "webdit.attention",
  family: "webdit.family",
  schedulerConfig: "webdit.scheduler_config",
  modelIndex: "webdit.model_index",
} as const;

/** Tensor-name prefixes of an artifact. */
export const PREFIX = {
  transformer: "transformer.",
  encoder: "text_encoder.",
  attention: "attention.",
} as const;

/** The name of a quantized layer's codes tensor. */
export function codesName(layer: string): string {
  return `${PREFIX.transformer}${layer}.qcodes`;
}

/** The name of a quantized layer's param tensor `key`. */
export function paramName(layer: string, key: string): string {
  return `${PREFIX.transformer}${layer}.qparam.${key}`;
}

/** The name of a layer's rotation tensor `key`. */
export function rotationName(layer: string, key: string): string {
  return `${PREFIX.transformer}${layer}.rot.${key}`;
}

/** The name of a layer's low-rank branch factor: `a` [R, in] or `b` [out, R] (F32). */
export function lowRankName(layer: string, key: "a" | "b"): string {
  return `${PREFIX.transformer}${layer}.lowrank.${key}`;
}

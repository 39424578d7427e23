/**
 * TLQ's parameters as an artifact stores them (runtime/quant/artifact.ts): without the LUT
 * where the stored grids rebuild it exactly, and the LUT rebuilt on load.
 *
 * @module
 */
import type { QuantizedWeight } from "../../plugins/types.ts";
import { tlqGroupSize, tlqLut, type TlqParams } from "../../plugins/quantizers/tlq.ts";
import { CheckpointError } from "../errors.ts";
import { hasCompactTlq, tlqParamsRebuildLut } from "../reference/qgemm.ts";
import { paramName } from "./artifact_names.ts";
import type { LayerPlan } from "./plan.ts";

/**
 * The params of a quantized weight as an artifact stores them: all of them, but the `lut`
 * of a TLQ weight whose parameters rebuild it exactly (the loader rebuilds it).
 */
export function storedParams(q: QuantizedWeight): Record<string, Float32Array> {
  if (!hasCompactTlq(q) && !tlqParamsRebuildLut(q)) return q.params;
  const out: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(q.params)) if (k !== "lut") out[k] = v;
  return out;
}

/** TLQ's LUT from its stored parameters and η (a layer written without `lut`). */
export function rebuildTlqLut(
  path: string,
  layer: string,
  params: Record<string, Float32Array>,
  l: LayerPlan,
): Float32Array {
  const eta = l.meta?.eta;
  if (typeof eta !== "number" || !Number.isFinite(eta)) {
    throw new CheckpointError(
      path,
      "a TLQ layer without qparam.lut needs η (eta)",
      `webdit.plan.layers.${layer}.meta.eta`,
    );
  }
  let tables = l.out; // one a row, or one a (row, group)
  try {
    tables *= l.in / tlqGroupSize(l.in, Number(l.meta?.groupSize ?? 0));
  } catch (e) {
    throw new CheckpointError(
      path,
      (e as Error).message,
      `webdit.plan.layers.${layer}.meta.groupSize`,
    );
  }
  for (const k of ["deltaPos", "zeroPos", "deltaNeg", "zeroNeg"]) {
    if (params[k]?.length !== tables) {
      throw new CheckpointError(
        path,
        `missing or not [${tables}] (and no qparam.lut)`,
        paramName(layer, k),
      );
    }
  }
  try {
    return tlqLut(params as unknown as TlqParams, eta, l.wbits);
  } catch (e) {
    throw new CheckpointError(path, (e as Error).message, paramName(layer, "deltaPos"));
  }
}

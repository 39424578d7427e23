/**
 * What a quantized layer's activation quantizer actually sees, given the layer's input x
 * and its epilogue: x itself, or — when the plan centres (`quantize --center`) or quantizes
 * a CFG pair's difference (`--cfg-delta`) — x minus each sample's centre and/or the pair's
 * [u; c − u]. QuantLinear (runtime/quant/qlinear.ts) forms it to quantize it; the
 * calibration and the report form it the same way to measure it.
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { LinearEpilogue } from "../model/linear.ts";
import { centerActivations } from "../ops/act_center.ts";
import { cfgDelta } from "../ops/cfg_delta.ts";
import type { CenterMode } from "../reference/act_center.ts";

/** How a plan forms its activation quantizer's input (quantize --center, --cfg-delta). */
export interface QuantizerInputSpec {
  /** Each sample's centre is subtracted first. */
  center?: CenterMode;
  /** A CFG pair [u; c] is quantized as [u; c − u]. */
  cfgDelta?: boolean;
}

/**
 * Records the quantizer's input for x under `spec`, as QuantLinear forms it; undefined when
 * it is x itself (no centring or delta applies to this call). The caller releases it.
 */
export function quantizerInput(
  rec: Recorder,
  x: Tensor,
  e: LinearEpilogue | undefined,
  spec: QuantizerInputSpec,
): Tensor | undefined {
  const pair = !!spec.cfgDelta && !!e?.cfgPair;
  if (spec.center && e?.rowsPerSample !== undefined) {
    const c = centerActivations(rec, x, e.rowsPerSample, spec.center, pair);
    c.centres.release();
    return c.centred;
  }
  return pair ? cfgDelta(rec, x) : undefined;
}

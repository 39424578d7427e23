/**
 * Activation centring before per-token quantization: each sample's channels are shifted by
 * a centre taken over its tokens (the mean or the midrange), so that an offset every token
 * shares (adaLN's shift, a GELU's positive mean) no longer sets each token's scale. The
 * quantized layer adds the centre's product with the weight back exactly, in float
 * (runtime/quant/qlinear.ts). CPU reference: runtime/reference/act_center.ts.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import type { KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import type { CenterMode } from "../reference/act_center.ts";
import { elementwise } from "./elementwise.ts";
import src from "../../wgsl/act_center.wgsl" with { type: "text" };

const CH = 32;
const RL = 8;
const CHUNK = 256;

interface Params {
  G: number;
  R: number;
  K: number;
  mode: CenterMode;
  pass: "partial" | "finish";
  /** x is a CFG pair: centres of [u; c − u]. */
  pair: boolean;
}

const specs = new Map<string, KernelSpec<Params>>();

function centreSpec(storage: StorageType, pass: Params["pass"]): KernelSpec<Params> {
  const key = `${storage}:${pass}`; // MODE and PAIR are override constants of one pipeline
  let spec = specs.get(key);
  if (!spec) {
    const c = composeWgsl(src, { storage });
    const chunks = (p: Params) => Math.ceil(p.R / CHUNK);
    spec = {
      name: `act_center_${pass}_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      entryPoint: pass,
      bindings: ["uniform", "read", "read_write", "read_write"],
      constants: (p) => ({ CH, RL, CHUNK, MODE: p.mode === "midrange" ? 1 : 0, PAIR: +p.pair }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32"],
        values: (p) => [p.R, p.K, chunks(p), p.G * p.K],
      },
      dispatch: (p) =>
        pass === "partial" ? [Math.ceil(p.K / CH), p.G * chunks(p)] : [Math.ceil((p.G * p.K) / 64)],
    };
    specs.set(key, spec);
  }
  return spec;
}

/** The rows of x [..., K] and K; throws unless `rowsPerGroup` splits them into whole groups. */
function groups(
  who: string,
  x: Tensor,
  rowsPerGroup: number,
): { G: number; K: number; dt: StorageType } {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${who}: x must be f32 or f16, got ${x.dtype}`);
  }
  const K = x.shape[x.shape.length - 1] ?? 0;
  const M = K === 0 ? 0 : x.size / K;
  if (!Number.isInteger(rowsPerGroup) || rowsPerGroup < 1 || M % rowsPerGroup !== 0) {
    throw new RangeError(`${who}: ${M} rows do not split into groups of ${rowsPerGroup}`);
  }
  return { G: M / rowsPerGroup, K, dt: x.dtype };
}

/**
 * Records the centres [G, K] (x's dtype) of x [G·rowsPerGroup, K]; with `pair`, of
 * [u; c − u] for the CFG pair x = [u; c] (G/2 groups each), without forming it.
 */
export function actCentres(
  rec: Recorder,
  x: Tensor,
  rowsPerGroup: number,
  mode: CenterMode,
  pair = false,
): Tensor {
  const { G, K, dt } = groups("actCentres", x, rowsPerGroup);
  if (pair && G % 2 !== 0) {
    throw new RangeError(`actCentres: ${G} groups are not a CFG pair (an even number)`);
  }
  const rt = rec.runtime;
  const out = createTensor(rt, [G, K], dt);
  if (G === 0 || K === 0) return out;
  const C = Math.ceil(rowsPerGroup / CHUNK);
  if (G * C > 65535 || Math.ceil((G * K) / 64) > 65535) {
    throw new RangeError(`actCentres: ${G} groups of ${rowsPerGroup}×${K} exceed one dispatch`);
  }
  // Per chunk of rows its sum (or min and max), then per group and channel their fold.
  const part = createTensor(rt, [G, C, 2, K], "f32");
  const p = { G, R: rowsPerGroup, K, mode, pair };
  rec.dispatch(centreSpec(dt, "partial"), { ...p, pass: "partial" }, [x, part, out]);
  rec.dispatch(centreSpec(dt, "finish"), { ...p, pass: "finish" }, [x, part, out]);
  part.release(); // the pool hands it out again only to work recorded after these
  return out;
}

/** x [G·rowsPerGroup, K] centred, and its centres [G, K]: x = centred + centres[group]. */
export interface Centred {
  /** x − its group's centre, shaped like x. */
  centred: Tensor;
  /** The centres [G, K]. */
  centres: Tensor;
}

/**
 * Records the centring of x by groups of `rowsPerGroup` rows; with `pair`, of [u; c − u]
 * for the CFG pair x = [u; c], fused (no copy of the delta). The caller releases both.
 */
export function centerActivations(
  rec: Recorder,
  x: Tensor,
  rowsPerGroup: number,
  mode: CenterMode,
  pair = false,
): Centred {
  const centres = actCentres(rec, x, rowsPerGroup, mode, pair);
  const op = pair ? "subPairGroupRow" : "subGroupRow";
  const centred = elementwise(rec, op, x, { y: centres, rowsPerGroup });
  return { centred, centres };
}

/**
 * The built-in quantizer plugins by name: what runtime/builtins.ts registers, and what a
 * quantize worker (runtime/quant/calibrate_worker.ts) can run without the registry.
 *
 * @module
 */
import type { QuantizerPlugin } from "../types.ts";
import { kmeansQuantizer } from "./kmeans.ts";
import { tlqQuantizer } from "./tlq.ts";
import { uniformQuantizer } from "./uniform.ts";

/** uniform, tlq and kmeans, by plugin name. */
export const BUILTIN_QUANTIZERS: Readonly<Record<string, QuantizerPlugin>> = {
  [uniformQuantizer.name]: uniformQuantizer,
  [tlqQuantizer.name]: tlqQuantizer,
  [kmeansQuantizer.name]: kmeansQuantizer,
};

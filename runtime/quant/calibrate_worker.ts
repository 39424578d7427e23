/**
 * Worker of runtime/quant/calibrate_pool.ts: one layer's plain quantization by a built-in
 * quantizer (plugins/quantizers/builtin.ts), off the main thread so that a model's layers
 * quantize on every core.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { BUILTIN_QUANTIZERS } from "../../plugins/quantizers/builtin.ts";
import type { CalibrateJob, CalibrateReply } from "./calibrate_pool.ts";
import { weightBuffers } from "./calibrate_pool.ts";

self.onmessage = (e: MessageEvent<CalibrateJob>) => {
  const j = e.data;
  try {
    const plugin = BUILTIN_QUANTIZERS[j.quantizer];
    if (!plugin) throw new RangeError(`quantizer "${j.quantizer}" is not built in`);
    const t0 = performance.now();
    const q = plugin.calibrate({ data: j.data, rows: j.rows, cols: j.cols }, j.opts);
    const reply: CalibrateReply = { q, ms: performance.now() - t0 };
    self.postMessage(reply, { transfer: weightBuffers(q) });
  } catch (err) {
    self.postMessage({ error: (err as Error).message } satisfies CalibrateReply);
  }
};

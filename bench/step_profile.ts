/**
 * `WEBDIT_STEP_PROFILE=1` for the step benches (step_bench.ts, flux_step_bench.ts): one
 * step's kernels with their GPU time (timestamp queries), printed to stderr before a row is
 * timed. A diagnostic beside the protocol's figures, not one of them.
 *
 * @module
 */
import type { Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { byKernel, formatKernelTimes } from "../runtime/gpu/launch_times.ts";
import type { Tensor } from "../runtime/gpu/tensor.ts";

/**
 * With WEBDIT_STEP_PROFILE=1 on an adapter with timestamp queries: records one step into a
 * profiling recorder (an output `record` returns is released here; one it keeps, it
 * returns nothing), and prints the time per kernel. Otherwise does nothing.
 */
export async function profileStep(
  r: Runtime,
  name: string,
  record: (rec: Recorder) => Tensor | void,
): Promise<void> {
  if (Deno.env.get("WEBDIT_STEP_PROFILE") !== "1" || !r.info.timestamps) return;
  const rec = new Recorder(r, "profile", { profile: true });
  record(rec)?.release();
  await rec.submit();
  const kernels = formatKernelTimes(byKernel(await rec.launchTimes()));
  console.error(`${name}: one step's kernels (GPU time):\n${kernels}`);
}

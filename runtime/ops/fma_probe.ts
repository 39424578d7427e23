/**
 * Whether an adapter's compiler contracts `acc + a·b` into one fused multiply-add (WGSL allows
 * either): the outlier-aware rotation kernels' CPU reference rounds as the adapter does.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, uploadTensor } from "../gpu/tensor.ts";

const PROBE_SRC = `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(1) fn main() {
  var acc = 0.0;
  for (var i = 0u; i < 2u; i++) { acc = acc + a[2u * i] * a[2u * i + 1u]; }
  o[0] = acc;
}`;

/**
 * True when this adapter's compiler contracts `acc + a·b` into one fused multiply-add
 * (WGSL allows either), probed with the accumulation pattern of the outlier kernel; the
 * CPU reference then rounds each multiply-add once (see rotateOutlierRef's `fused`).
 */
export async function detectFmaContraction(rt: Runtime): Promise<boolean> {
  // (1 + 2^-23)² = 1 + 2^-22 + 2^-46: added to −(1 + 2^-22) it leaves 2^-46 when fused
  // and 0 when the product is rounded first.
  const e = 1 + 2 ** -23;
  const a = uploadTensor(rt, new Float32Array([-Math.fround(e * e), 1, e, e]), [4]);
  const o = createTensor(rt, [1], "f32");
  const rec = new Recorder(rt);
  rec.dispatch(
    {
      name: "fma_probe",
      source: PROBE_SRC,
      bindings: ["read", "read_write"],
      dispatch: () => [1],
    },
    {},
    [a, o],
  );
  await rec.submit();
  const v = (await readTensor(rt, o))[0];
  a.release();
  o.release();
  return v !== 0;
}

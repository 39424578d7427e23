/**
 * Test helpers for GPU tests: a runtime per test on the default adapter (the CPU
 * adapter in CI), destroyed afterwards.
 *
 * @module
 */
import { createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, type Tensor } from "../runtime/gpu/tensor.ts";

/** Runs `fn` with a fresh runtime and destroys it afterwards. */
export async function withRuntime<T>(fn: (rt: Runtime) => Promise<T> | T): Promise<T> {
  const rt = await createRuntime({ adapter: "auto" });
  try {
    return await fn(rt);
  } finally {
    rt.destroy();
    await collectGarbage();
  }
}

/**
 * Runs a garbage collection where the runner exposes one (`deno task test` passes
 * --v8-flags=--expose-gc). A destroyed device's driver objects go only once its JS objects
 * are collected, and NVIDIA's Vulkan driver refuses new devices after some 60–175
 * uncollected ones in a process ("Parent device is lost"), which a test suite reaches.
 */
export async function collectGarbage(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  gc();
  await new Promise((r) => setTimeout(r, 0)); // let the collected objects' finalizers run
}

/**
 * Runs `fn` with `rt`'s storage-binding limit lowered to `bytes` (after loading what must not
 * be split, e.g. weights), then restores it: the row-chunk and fit paths under a small device.
 */
export async function withBindingLimit<T>(
  rt: Runtime,
  bytes: number,
  fn: () => Promise<T>,
): Promise<T> {
  const limits = rt.info.limits;
  const old = limits.maxStorageBufferBindingSize;
  limits.maxStorageBufferBindingSize = bytes;
  try {
    return await fn();
  } finally {
    limits.maxStorageBufferBindingSize = old;
  }
}

/** Records with `fn`, submits, and reads `fn`'s returned tensor back as f32. */
export async function runAndRead(
  rt: Runtime,
  fn: (rec: Recorder) => Tensor,
): Promise<Float32Array> {
  const rec = new Recorder(rt);
  const out = fn(rec);
  await rec.submit();
  return await readTensor(rt, out);
}

/** Options for GPU tests: no leak checks (WebGPU keeps internal resources alive). */
export const gpuTest = { sanitizeResources: false, sanitizeOps: false } as const;

/**
 * webdit: diffusion transformers on WebGPU, with low-bit quantization and sparse,
 * quantized attention.
 *
 * ```ts
 * import { createRuntime } from "./mod.ts";
 * const rt = await createRuntime({ adapter: "auto" });
 * console.log(rt.info.description);
 * rt.destroy();
 * ```
 *
 * @module
 */
export { ADAPTER_CHOICES, createRuntime, Runtime } from "./runtime/gpu/device.ts";
export type { AdapterChoice, RuntimeInfo, RuntimeOptions } from "./runtime/gpu/device.ts";
export { finish, Recorder } from "./runtime/gpu/kernel.ts";
export type { KernelSpec } from "./runtime/gpu/kernel.ts";
export { createTensor, readTensor, Tensor, uploadTensor } from "./runtime/gpu/tensor.ts";
export type { DType } from "./runtime/gpu/tensor.ts";
export * from "./runtime/errors.ts";
export { Prng } from "./runtime/io/prng.ts";

/**
 * The explicit GPU context: adapter choice, features, limits, device loss.
 *
 * `createRuntime()` returns a {@linkcode Runtime} that is passed to everything that
 * touches the GPU; there is no global device. Tests create and destroy their own.
 *
 * @module
 */
import { AdapterError, DeviceLostError, UnsupportedFeatureError } from "../errors.ts";
import { PipelineCache } from "./kernel.ts";
import { BufferPool } from "./tensor.ts";
import { BindGroupCache, UniformChunks } from "./bind_groups.ts";

/** Which adapter to use: any, a real GPU only, or the CPU (fallback) adapter only. */
export type AdapterChoice = "auto" | "gpu" | "cpu";

/** The adapter choices, for validation and help text. */
export const ADAPTER_CHOICES: readonly AdapterChoice[] = ["auto", "gpu", "cpu"];

/** Options of {@linkcode createRuntime}. */
export interface RuntimeOptions {
  /** Adapter kind; default "auto" (the high-performance adapter, falling back to the CPU). */
  adapter?: AdapterChoice;
  /** Require f16 (true), refuse it (false) or use it where present ("auto", the default). */
  f16?: boolean | "auto";
  /** A label for the device, shown in WebGPU errors. */
  label?: string;
  /**
   * Binds no buffer larger than this many bytes, though the adapter could (a device with
   * less memory, or testing the split paths); default the adapter's limit. Work on wider
   * tensors is split where it can be (runtime/model/row_chunks.ts).
   */
  maxBindingBytes?: number;
}

/** What the runtime found: the adapter, its features and the limits it was granted. */
export interface RuntimeInfo {
  /** The adapter's description, e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (…)". */
  description: string;
  /** The adapter's vendor string. */
  vendor: string;
  /** The adapter's architecture string. */
  architecture: string;
  /** True when the adapter is a software (fallback) one. */
  fallback: boolean;
  /** shader-f16 is enabled on the device. */
  f16: boolean;
  /** timestamp-query is enabled on the device. */
  timestamps: boolean;
  /** WGSL has packed_4x8_integer_dot_product (dot4I8Packed). */
  packedDot: boolean;
  /** All features of the adapter. */
  adapterFeatures: string[];
  /** The WGSL language features of navigator.gpu. */
  wgslFeatures: string[];
  /** The limits requested from the device (raised to the adapter's). */
  limits: Record<string, number>;
}

/** Limits raised to the adapter's maximum when the device is requested. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
] as const;

/** The WebGPU default of maxStorageBufferBindingSize (128 MiB), for limits left unreported. */
const DEFAULT_BINDING = 134217728;

/** The GPU context passed explicitly to every function that touches the GPU. */
export class Runtime {
  /** The WebGPU device. Only runtime/gpu uses it directly. */
  readonly device: GPUDevice;
  /** What was found and enabled. */
  readonly info: RuntimeInfo;
  /** Compiled pipelines, keyed by kernel, variant and constants. */
  readonly pipelines: PipelineCache;
  /** Storage buffers for reuse. */
  readonly pool: BufferPool;
  /** Bind groups of recorded launches, reused across recordings. */
  readonly bindGroups: BindGroupCache;
  /** Uniform chunks of recordings, reused across recordings. */
  readonly uniforms: UniformChunks;
  /** Resolves with a typed error if the device is lost (never rejects). */
  readonly lost: Promise<DeviceLostError>;
  #lostError: DeviceLostError | undefined;
  #destroyed = false;
  #section: Promise<unknown> = Promise.resolve();

  /** Wraps a device; use {@linkcode createRuntime} instead. */
  constructor(device: GPUDevice, info: RuntimeInfo) {
    this.device = device;
    this.info = info;
    this.pipelines = new PipelineCache(this);
    // llvmpipe loads a uniform at a lane-uniform address once for all lanes, where a storage
    // load is a loop over the lanes: CPU kernels bind small operands as uniforms.
    this.pool = new BufferPool(device, info.fallback ? GPUBufferUsage.UNIFORM : 0);
    this.bindGroups = new BindGroupCache(device);
    this.uniforms = new UniformChunks(device);
    this.lost = device.lost.then((e) => {
      this.#lostError = new DeviceLostError(
        this.#destroyed ? "destroyed" : (e.reason ?? "unknown"),
        e.message || "no message",
      );
      return this.#lostError;
    });
  }

  /**
   * The most bytes one storage binding may hold: the smaller of the granted
   * maxStorageBufferBindingSize and maxBufferSize. createTensor refuses wider tensors.
   */
  get bindingLimit(): number {
    const l = this.info.limits;
    return Math.min(l.maxStorageBufferBindingSize ?? DEFAULT_BINDING, l.maxBufferSize ?? Infinity);
  }

  /**
   * Runs `fn` once no other exclusive section of this runtime is running, holding later ones
   * back until it settles. Recordings open at the same time share the buffer pool unsafely
   * (one's released buffer may go to the other, which can be submitted first), so each
   * pipeline request records inside one section; other GPU work that may overlap on the same
   * runtime takes one too. Not reentrant: `fn` must not wait for another section.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#section.then(() => fn(), () => fn());
    this.#section = run.catch(() => {});
    return run;
  }

  /** True once the device is lost or destroyed. */
  get isLost(): boolean {
    return this.#lostError !== undefined || this.#destroyed;
  }

  /** Throws the DeviceLostError if the device is gone; call before GPU work. */
  assertAlive(): void {
    if (this.#lostError) throw this.#lostError;
    if (this.#destroyed) {
      throw new DeviceLostError("destroyed", "the runtime was destroyed; create a new one");
    }
  }

  /** Destroys the device and every pooled buffer. The runtime can't be used after. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.pool.clear();
    this.bindGroups.clear();
    this.uniforms.clear();
    this.device.destroy();
  }
}

/**
 * On Linux, unless DENO_WEBGPU_BACKEND is set, restricts wgpu to Vulkan before its instance
 * exists (the first requestAdapter reads the variable). Its GL backend would load Mesa's
 * EGL and gallium, whose threads and destructors corrupted the heap at process exit under
 * lavapipe ("corrupted size vs. prev_size", after every test had passed); and GLES compute
 * has neither shader-f16 nor packed dot products. Without env permission nothing changes.
 */
function preferVulkanOnLinux(): void {
  if (Deno.build.os !== "linux") return;
  try {
    if (Deno.env.get("DENO_WEBGPU_BACKEND") === undefined) {
      Deno.env.set("DENO_WEBGPU_BACKEND", "vulkan");
    }
  } catch {
    // No --allow-env: leave wgpu's default backends.
  }
}

/** Requests the adapter for `choice`, or throws an AdapterError saying why there is none. */
async function requestAdapter(choice: AdapterChoice): Promise<GPUAdapter> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new AdapterError("WebGPU is not available in this runtime (navigator.gpu is missing)");
  }
  preferVulkanOnLinux();
  if (choice === "cpu") {
    const a = await navigator.gpu.requestAdapter({ forceFallbackAdapter: true });
    if (a && a.info.isFallbackAdapter) return a;
    // Some drivers expose the software rasteriser without the fallback flag honoured.
    const b = await navigator.gpu.requestAdapter({ powerPreference: "low-power" });
    if (b && b.info.isFallbackAdapter) return b;
    throw new AdapterError(
      "No CPU (fallback) adapter was found; install Mesa's lavapipe (apt-get install mesa-vulkan-drivers) or use --adapter gpu",
    );
  }
  const a = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!a) {
    throw new AdapterError(
      "No WebGPU adapter was found; install a Vulkan driver (e.g. apt-get install mesa-vulkan-drivers)" +
        (Deno.build.os === "linux"
          ? ", or set DENO_WEBGPU_BACKEND=gl to try OpenGL (webdit uses Vulkan on Linux by default)"
          : ""),
    );
  }
  if (choice === "gpu" && a.info.isFallbackAdapter) {
    throw new AdapterError(
      `No hardware GPU adapter was found (only the fallback "${a.info.description}"); use --adapter cpu or auto`,
    );
  }
  return a;
}

/**
 * Creates a runtime on the chosen adapter, with shader-f16 and timestamp-query where
 * available and limits raised to the adapter's.
 *
 * @throws {TypeError} for an adapter choice that is not auto, gpu or cpu.
 * @throws {AdapterError} when no adapter of that kind exists.
 * @throws {UnsupportedFeatureError} when f16 is required and the adapter lacks shader-f16.
 */
export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const choice = options.adapter ?? "auto";
  if (!ADAPTER_CHOICES.includes(choice)) {
    throw new TypeError(
      `Adapter must be one of ${ADAPTER_CHOICES.join(", ")}, got ${JSON.stringify(choice)}`,
    );
  }
  const cap = options.maxBindingBytes;
  if (cap !== undefined && !(Number.isInteger(cap) && cap >= 4096)) {
    throw new RangeError(`maxBindingBytes must be an integer of at least 4096, got ${cap}`);
  }
  const f16Option = options.f16 ?? "auto";
  if (f16Option !== true && f16Option !== false && f16Option !== "auto") {
    throw new TypeError(`f16 must be true, false or "auto", got ${JSON.stringify(f16Option)}`);
  }
  const adapter = await requestAdapter(choice);
  const hasF16 = adapter.features.has("shader-f16");
  if (f16Option === true && !hasF16) {
    throw new UnsupportedFeatureError(
      "shader-f16",
      `The adapter "${adapter.info.description}" has no shader-f16; run in f32 instead`,
    );
  }
  const features: GPUFeatureName[] = [];
  const f16 = hasF16 && f16Option !== false;
  if (f16) features.push("shader-f16");
  const timestamps = adapter.features.has("timestamp-query");
  if (timestamps) features.push("timestamp-query");

  const limits: Record<string, number> = {};
  const adapterLimits = adapter.limits as unknown as Record<string, number>;
  for (const name of RAISED_LIMITS) {
    const v = adapterLimits[name];
    if (typeof v === "number") limits[name] = v;
  }
  const device = await adapter.requestDevice({
    label: options.label ?? "webdit",
    requiredFeatures: features,
    requiredLimits: limits,
  });
  if (cap !== undefined) {
    // Honoured by the runtime (createTensor, the split paths), not by the device itself.
    for (const name of ["maxStorageBufferBindingSize", "maxBufferSize"]) {
      limits[name] = Math.min(limits[name] ?? DEFAULT_BINDING, cap);
    }
  }
  // Not in Deno's GPU typings yet, but present at run time.
  const wgsl = (navigator.gpu as unknown as { wgslLanguageFeatures?: Set<string> })
    .wgslLanguageFeatures;
  const wgslFeatures = wgsl ? [...wgsl] : [];
  const info: RuntimeInfo = {
    description: adapter.info.description || adapter.info.device || "unknown adapter",
    vendor: adapter.info.vendor,
    architecture: adapter.info.architecture,
    fallback: adapter.info.isFallbackAdapter,
    f16,
    timestamps,
    packedDot: wgslFeatures.includes("packed_4x8_integer_dot_product"),
    adapterFeatures: [...adapter.features].map(String).sort(),
    wgslFeatures: wgslFeatures.sort(),
    limits,
  };
  return new Runtime(device, info);
}

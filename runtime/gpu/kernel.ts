/**
 * Typed kernel specs, the pipeline cache, and the recorder that turns a sequence of
 * kernel launches into one command buffer with one submit.
 *
 * @module
 */
import { GpuExecutionError, ShaderCompileError } from "../errors.ts";
import type { Runtime } from "./device.ts";
import { createTensor, type DType, type HostArray, hostBytes, type Tensor } from "./tensor.ts";
import { UNIFORM_CHUNK, UNIFORM_SLOT, type UniformChunk } from "./bind_groups.ts";

/**
 * How a kernel binds a buffer: a params uniform, read-only storage, read-write storage, or
 * "read_uniform": a read-only tensor as a uniform buffer (at most
 * maxUniformBufferBindingSize, its buffer made with UNIFORM usage: the pool's are on CPU
 * adapters; see {@linkcode uniformReadable}).
 */
export type BindingKind = "uniform" | "read" | "read_write" | "read_uniform";

/** The scalar type of one field of a kernel's params uniform. */
export type UniformField = "u32" | "i32" | "f32";

/** A kernel's params uniform: the struct layout and the values for a launch. */
export interface UniformSpec<P> {
  /** Field types in struct order (every field is 4 bytes). */
  readonly fields: readonly UniformField[];
  /** The field values for a launch with params `p`. */
  values(p: P): readonly number[];
}

/**
 * A compute kernel: WGSL source, bindings at @group(0) in order, and functions of the
 * launch params giving the override constants, the uniform values and the grid.
 */
export interface KernelSpec<P> {
  /** A stable name, used in errors and in the pipeline cache key. */
  readonly name: string;
  /** The composed WGSL source (see compose.ts). */
  readonly source: string;
  /** The entry point; default "main". */
  readonly entryPoint?: string;
  /** Binding kinds at @binding(0), (1), … of @group(0). */
  readonly bindings: readonly BindingKind[];
  /** Lines of prelude before the kernel's own file, so errors point into that file. */
  readonly preludeLines?: number;
  /** Override constants (pipeline-specialising; each distinct set compiles once). */
  constants?(p: P): Record<string, number>;
  /** The params uniform, bound wherever `bindings` says "uniform". */
  readonly uniform?: UniformSpec<P>;
  /** Workgroup counts [x, y, z]. */
  dispatch(p: P): readonly [number, number?, number?];
}

/** Splits `groups` workgroups over x and y so neither exceeds the 65535 limit. */
export function grid1d(groups: number, maxPerDim = 65535): [number, number] {
  if (groups <= maxPerDim) return [Math.max(1, groups), 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}

/** Stable short hash (FNV-1a) of a string. */
export function hashString(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** One compiled pipeline of a {@linkcode PipelineCache}. */
export interface CachedPipeline {
  /** The compute pipeline. */
  pipeline: GPUComputePipeline;
  /** Its bind group layout (group 0). */
  layout: GPUBindGroupLayout;
  /** Resolves to a compile error, or undefined; cleared once checked. */
  check: Promise<ShaderCompileError | undefined> | undefined;
}

const sourceHashes = new WeakMap<object, string>();

/** Compiled pipelines keyed by kernel name, source hash, entry point and constants. */
export class PipelineCache {
  #rt: Runtime;
  #pipelines = new Map<string, CachedPipeline>();
  #layouts = new Map<string, GPUBindGroupLayout>();

  /** Creates an empty cache for `rt`. */
  constructor(rt: Runtime) {
    this.#rt = rt;
  }

  /** Number of compiled pipelines. */
  get size(): number {
    return this.#pipelines.size;
  }

  #layout(bindings: readonly BindingKind[]): GPUBindGroupLayout {
    const key = bindings.join(",");
    let layout = this.#layouts.get(key);
    if (!layout) {
      layout = this.#rt.device.createBindGroupLayout({
        label: key,
        entries: bindings.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          // Uniforms take a dynamic offset: a recorder's launches of one kernel on the same
          // buffers then share one bind group (see Recorder.dispatch).
          buffer: kind === "uniform"
            ? { type: "uniform", hasDynamicOffset: true }
            : kind === "read_uniform"
            ? { type: "uniform" }
            : { type: kind === "read" ? "read-only-storage" : "storage" },
        })),
      });
      this.#layouts.set(key, layout);
    }
    return layout;
  }

  /**
   * Returns the pipeline for `spec` with `constants`, creating it on a miss. Compile
   * errors surface asynchronously through `check` (awaited by {@linkcode Recorder.submit}
   * and by {@linkcode PipelineCache.compile}).
   */
  get<P>(spec: KernelSpec<P>, constants: Record<string, number>): CachedPipeline {
    let h = sourceHashes.get(spec);
    if (!h) sourceHashes.set(spec, h = hashString(spec.source));
    const entry = spec.entryPoint ?? "main";
    const ckeys = Object.keys(constants).sort().map((k) => `${k}=${constants[k]}`).join(",");
    const key = `${spec.name}#${h}:${entry}|${ckeys}`;
    let cached = this.#pipelines.get(key);
    if (cached) return cached;
    const device = this.#rt.device;
    const layout = this.#layout(spec.bindings);
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code: spec.source, label: spec.name });
    const pipeline = device.createComputePipeline({
      label: spec.name,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: entry, constants },
    });
    const scope = device.popErrorScope();
    const check = scope.then(async (err) => {
      if (!err) return undefined;
      let line = 0;
      let message = err.message;
      try {
        const info = await module.getCompilationInfo();
        const first = info.messages.find((m) => m.type === "error");
        if (first) {
          line = Math.max(0, first.lineNum - (spec.preludeLines ?? 0));
          message = first.message.trim().split("\n")[0];
        }
      } catch { /* keep the scope's message */ }
      this.#pipelines.delete(key);
      return new ShaderCompileError(spec.name, line, message.trim());
    });
    cached = { pipeline, layout, check };
    this.#pipelines.set(key, cached);
    return cached;
  }

  /** Compiles `spec` for `params` now, throwing ShaderCompileError on failure. */
  async compile<P>(spec: KernelSpec<P>, params: P): Promise<void> {
    const c = this.get(spec, spec.constants?.(params) ?? {});
    const err = await c.check;
    c.check = undefined;
    if (err) throw err;
  }
}

/**
 * Whether `t` may be bound as "read_uniform": its buffer has UNIFORM usage and its bytes fit
 * the adapter's maxUniformBufferBindingSize.
 */
export function uniformReadable(rt: Runtime, t: Tensor): boolean {
  const limit = rt.info.limits.maxUniformBufferBindingSize ?? 65536;
  return (t.buffer.usage & GPUBufferUsage.UNIFORM) !== 0 && t.byteLength <= limit;
}

/** Anything a kernel can bind: a tensor or a raw buffer. */
export type Bindable = Tensor | GPUBuffer;

/** Options of a {@linkcode Recorder}. */
export interface RecorderOptions {
  /**
   * Time every launch on the GPU (timestamp-query; each launch gets its own compute pass):
   * {@linkcode Recorder.launchTimes} reads them after the submit. For profiling only.
   */
  profile?: boolean;
}

/** One launch's GPU time from a profiling {@linkcode Recorder}. */
export interface LaunchTime {
  /** The kernel spec's name. */
  name: string;
  /** End minus start of its compute pass, in ms. */
  ms: number;
}

const QUERIES_PER_SET = 4096; // two a launch

/**
 * Records kernel launches into one command encoder and submits them at once. Uniform
 * params of all launches share chunked buffers, written just before the submit.
 */
export class Recorder {
  #rt: Runtime;
  #encoder: GPUCommandEncoder;
  #profile?: { sets: GPUQuerySet[]; names: string[]; read: GPUBuffer[] };
  #pass: GPUComputePassEncoder | undefined;
  #chunks: UniformChunk[] = [];
  #slot = UNIFORM_CHUNK / UNIFORM_SLOT;
  #checks: CachedPipeline[] = [];
  #staging: GPUBuffer[] = [];
  #count = 0;
  #submitted = false;

  /** Starts a recording on `rt`. */
  constructor(rt: Runtime, label = "webdit", options: RecorderOptions = {}) {
    rt.assertAlive();
    if (options.profile && !rt.info.timestamps) {
      throw new RangeError("Recorder: profile needs timestamp-query, which this adapter lacks");
    }
    this.#rt = rt;
    this.#encoder = rt.device.createCommandEncoder({ label });
    if (options.profile) this.#profile = { sets: [], names: [], read: [] };
    rt.pool.openRecording(this);
  }

  /** Drops the recording without submitting it (buffers it used become safe to upload into). */
  discard(): void {
    this.#submitted = true;
    this.#rt.pool.closeRecording(this);
    this.#destroyOwn(false);
  }

  // The recording's own buffers: uniform chunks (back to the runtime), upload staging, and
  // the profile's queries unless launchTimes will read them.
  #destroyOwn(keepProfile: boolean): void {
    this.#rt.uniforms.give(this.#chunks);
    this.#chunks = [];
    for (const b of this.#staging) b.destroy();
    if (this.#profile && !keepProfile) {
      for (const q of this.#profile.sets) q.destroy();
      for (const b of this.#profile.read) b.destroy();
      this.#profile.read = [];
    }
  }

  /** The runtime this recorder records for. */
  get runtime(): Runtime {
    return this.#rt;
  }

  /** Number of kernel launches recorded. */
  get dispatches(): number {
    return this.#count;
  }

  #uniformSlot(
    values: readonly number[],
    fields: readonly UniformField[],
  ): { buffer: GPUBuffer; offset: number; size: number } {
    if (this.#slot >= UNIFORM_CHUNK / UNIFORM_SLOT) {
      this.#chunks.push(this.#rt.uniforms.take());
      this.#slot = 0;
    }
    const chunk = this.#chunks[this.#chunks.length - 1];
    const offset = this.#slot++ * UNIFORM_SLOT;
    const view = new DataView(chunk.data, offset, UNIFORM_SLOT);
    if (values.length !== fields.length) {
      throw new RangeError(`Uniform has ${fields.length} fields, got ${values.length} values`);
    }
    fields.forEach((f, i) => {
      if (f === "f32") view.setFloat32(i * 4, values[i], true);
      else if (f === "i32") view.setInt32(i * 4, values[i], true);
      else view.setUint32(i * 4, values[i], true);
    });
    return { buffer: chunk.buffer, offset, size: Math.max(16, Math.ceil(fields.length / 4) * 16) };
  }

  /** Records one launch of `spec` with `params`, binding `buffers` to the non-uniform slots. */
  dispatch<P>(spec: KernelSpec<P>, params: P, buffers: readonly Bindable[]): void {
    if (this.#submitted) throw new Error("This recorder was already submitted");
    const storageSlots = spec.bindings.filter((b) => b !== "uniform").length;
    if (buffers.length !== storageSlots) {
      throw new RangeError(
        `Kernel "${spec.name}" binds ${storageSlots} buffers, got ${buffers.length}`,
      );
    }
    const cached = this.#rt.pipelines.get(spec, spec.constants?.(params) ?? {});
    if (cached.check) this.#checks.push(cached);
    // Bind groups are the main host cost of a launch (~60 % of recording on lavapipe): the
    // runtime keeps one per kernel layout and set of buffers, the uniform slot given as a
    // dynamic offset, so the next sampler step's launches find theirs.
    const offsets: number[] = [];
    const resources: GPUBufferBinding[] = [];
    let next = 0;
    for (const kind of spec.bindings) {
      if (kind === "uniform") {
        if (!spec.uniform) {
          throw new Error(`Kernel "${spec.name}" has a uniform binding but no uniform spec`);
        }
        const slot = this.#uniformSlot(spec.uniform.values(params), spec.uniform.fields);
        offsets.push(slot.offset);
        resources.push({ buffer: slot.buffer, size: slot.size });
      } else {
        const b = buffers[next++];
        const buffer = b instanceof GPUBuffer ? b : b.buffer;
        // A uniform binding may not exceed maxUniformBufferBindingSize: bind the tensor's bytes.
        const size = kind === "read_uniform" && !(b instanceof GPUBuffer)
          ? b.byteLength
          : undefined;
        resources.push(size === undefined ? { buffer } : { buffer, size });
      }
    }
    const group = this.#rt.bindGroups.get(cached.layout, resources);
    if (this.#profile) this.#profiledPass(spec.name);
    this.#pass ??= this.#encoder.beginComputePass();
    this.#pass.setPipeline(cached.pipeline);
    this.#pass.setBindGroup(0, group, offsets);
    const [x, y = 1, z = 1] = spec.dispatch(params);
    this.#pass.dispatchWorkgroups(x, y, z);
    this.#count++;
    if (this.#profile) {
      this.#pass.end();
      this.#pass = undefined;
    }
  }

  // Profiling: the launch gets a pass of its own whose start and end write timestamps.
  #profiledPass(name: string): void {
    const pr = this.#profile!;
    const i = pr.names.length % (QUERIES_PER_SET / 2);
    if (i === 0) {
      pr.sets.push(this.#rt.device.createQuerySet({ type: "timestamp", count: QUERIES_PER_SET }));
    }
    pr.names.push(name);
    this.#pass?.end();
    this.#pass = this.#encoder.beginComputePass({
      timestampWrites: {
        querySet: pr.sets[pr.sets.length - 1],
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      },
    });
  }

  /**
   * The GPU time of every launch, in order, of a recorder made with `profile` (after its
   * submit). Timestamps may be quantized or, on some drivers, coarse: compare within a run.
   */
  async launchTimes(): Promise<LaunchTime[]> {
    const pr = this.#profile;
    if (!pr) throw new Error("launchTimes: this recorder was not made with profile");
    if (!this.#submitted) throw new Error("launchTimes: submit first");
    const out: LaunchTime[] = [];
    for (const [k, buf] of pr.read.entries()) {
      await buf.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(buf.getMappedRange().slice(0));
      buf.destroy();
      const first = k * (QUERIES_PER_SET / 2);
      for (let i = 0; first + i < pr.names.length && i < QUERIES_PER_SET / 2; i++) {
        out.push({ name: pr.names[first + i], ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6 });
      }
    }
    pr.read = [];
    for (const q of pr.sets) q.destroy();
    return out;
  }

  // Profiling: each query set resolved and copied to a buffer launchTimes maps.
  #resolveProfile(): void {
    const pr = this.#profile;
    if (!pr) return;
    for (const [k, set] of pr.sets.entries()) {
      const n = Math.min(QUERIES_PER_SET, 2 * (pr.names.length - k * (QUERIES_PER_SET / 2)));
      const device = this.#rt.device;
      const resolve = device.createBuffer({
        size: 8 * n,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      const read = device.createBuffer({
        size: 8 * n,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      this.#encoder.resolveQuerySet(set, 0, n, resolve, 0);
      this.#encoder.copyBufferToBuffer(resolve, 0, read, 0, 8 * n);
      this.#staging.push(resolve); // destroyed after the submit, as the upload staging
      pr.read.push(read);
    }
  }

  /** Records a buffer-to-buffer copy of `bytes` bytes (a multiple of 4). */
  copy(src: Bindable, dst: Bindable, bytes: number, srcOffset = 0, dstOffset = 0): void {
    this.#pass?.end();
    this.#pass = undefined;
    const s = src instanceof GPUBuffer ? src : src.buffer;
    const d = dst instanceof GPUBuffer ? dst : dst.buffer;
    this.#encoder.copyBufferToBuffer(s, srcOffset, d, dstOffset, Math.ceil(bytes / 4) * 4);
  }

  /**
   * Uploads host data into a new pooled tensor as part of this recording. Unlike
   * queue.writeBuffer into the tensor (which runs before the whole submit), the copy from a
   * fresh staging buffer is ordered with the recorded kernels, so a buffer released earlier
   * in this recording can be reused safely.
   */
  upload(data: HostArray, shape: readonly number[], dtype: DType = "f32"): Tensor {
    const t = createTensor(this.#rt, shape, dtype);
    let bytes = hostBytes(data, dtype, t);
    const size = Math.ceil(bytes.byteLength / 4) * 4;
    if (size !== bytes.byteLength) { // writeBuffer writes whole words
      const padded = new Uint8Array(size);
      padded.set(bytes);
      bytes = padded;
    }
    const staging = this.#rt.device.createBuffer({
      size: Math.max(4, size),
      usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    // The staging buffer is this upload's alone, so writing it before the submit is safe; on
    // NVIDIA (Deno's wgpu, Vulkan) writeBuffer is ~70× faster than writing a buffer mapped at
    // creation (4 MB: 1.7 ms against 130 ms on an H200).
    if (size > 0) this.#rt.device.queue.writeBuffer(staging, 0, bytes);
    this.#staging.push(staging);
    if (size > 0) this.copy(staging, t, size);
    return t;
  }

  /**
   * Checks new pipelines for compile errors, writes the uniforms and submits.
   * @throws {ShaderCompileError} if a kernel did not compile (nothing is submitted).
   * @throws {GpuExecutionError} on a validation or out-of-memory error of the submit.
   */
  async submit(): Promise<void> {
    if (this.#submitted) throw new Error("This recorder was already submitted");
    this.#submitted = true;
    this.#pass?.end();
    this.#resolveProfile();
    for (const c of this.#checks) {
      const err = await c.check;
      c.check = undefined;
      if (err) {
        this.#rt.pool.closeRecording(this);
        this.#destroyOwn(false);
        throw err;
      }
    }
    this.#rt.assertAlive();
    const device = this.#rt.device;
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    this.#chunks.forEach((c, i) => {
      const used = i === this.#chunks.length - 1 ? this.#slot * UNIFORM_SLOT : UNIFORM_CHUNK;
      device.queue.writeBuffer(c.buffer, 0, c.data, 0, used);
    });
    device.queue.submit([this.#encoder.finish()]);
    // Queue writes from now on land after this recording's kernels.
    this.#rt.pool.closeRecording(this);
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    this.#destroyOwn(true);
    const err = validation ?? oom;
    if (err) throw new GpuExecutionError(`GPU error while running kernels: ${err.message.trim()}`);
  }
}

/** Waits until the GPU has finished all submitted work. */
export async function finish(rt: Runtime): Promise<void> {
  await Promise.race([
    rt.device.queue.onSubmittedWorkDone(),
    rt.lost.then((e) => Promise.reject(e)),
  ]);
}

/**
 * What recordings reuse across submits: bind groups (the main host cost of a launch) and the
 * uniform chunks their params live in. A sampler step records the same launches on the same
 * buffers as the step before (pooled buffers come back in the same order), so with both kept
 * the next step creates almost no bind group.
 *
 * @module
 */

/** Bytes of one launch's params slot (the dynamic-offset alignment). */
export const UNIFORM_SLOT = 256;
/** Bytes of one uniform chunk: 256 launches. */
export const UNIFORM_CHUNK = 256 * UNIFORM_SLOT;

// Small ids of GPU objects (layouts, buffers), for bind-group keys.
const objectIds = new WeakMap<object, number>();
let nextObjectId = 0;

/** A small number that names `o` for as long as it exists (never reused). */
export function objectId(o: object): number {
  let id = objectIds.get(o);
  if (id === undefined) objectIds.set(o, id = nextObjectId++);
  return id;
}

/**
 * Bind groups by layout and bound buffers, least recently used dropped beyond `max`. A key
 * names both by {@linkcode objectId}, so a destroyed buffer's groups never match a new one.
 */
export class BindGroupCache {
  #device: GPUDevice;
  #max: number;
  #groups = new Map<string, GPUBindGroup>();
  #created = 0;

  /** A cache on `device` keeping at most `max` groups. */
  constructor(device: GPUDevice, max = 8192) {
    this.#device = device;
    this.#max = max;
  }

  /** Groups held now. */
  get size(): number {
    return this.#groups.size;
  }

  /** Groups created since this cache began (misses). */
  get created(): number {
    return this.#created;
  }

  /** The group of `layout` over `resources` (binding i = resources[i]); created on a miss. */
  get(layout: GPUBindGroupLayout, resources: readonly GPUBufferBinding[]): GPUBindGroup {
    let key = `${objectId(layout)}|`;
    for (const r of resources) key += `${objectId(r.buffer)}:${r.size ?? ""},`;
    let group = this.#groups.get(key);
    if (group) {
      // Most recently used last: Map keeps insertion order.
      this.#groups.delete(key);
    } else {
      group = this.#device.createBindGroup({
        layout,
        entries: resources.map((resource, binding) => ({ binding, resource })),
      });
      this.#created++;
      if (this.#groups.size >= this.#max) {
        this.#groups.delete(this.#groups.keys().next().value!);
      }
    }
    this.#groups.set(key, group);
    return group;
  }

  /** Drops every group. */
  clear(): void {
    this.#groups.clear();
  }
}

/** A uniform buffer of {@linkcode UNIFORM_CHUNK} bytes and the host copy written into it. */
export interface UniformChunk {
  buffer: GPUBuffer;
  data: ArrayBuffer;
}

/**
 * Uniform chunks for reuse. A recording holds its chunks from first use to its submit, whose
 * queue.writeBuffer lands after every earlier submit's kernels, so a chunk given back at a
 * submit can serve the next recording while the GPU still runs the last.
 */
export class UniformChunks {
  #device: GPUDevice;
  #free: UniformChunk[] = [];

  /** Chunks on `device`. */
  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** Chunks kept for reuse. */
  get free(): number {
    return this.#free.length;
  }

  /** A chunk for one recording: the most recently given back, or a new one. */
  take(): UniformChunk {
    return this.#free.pop() ?? {
      buffer: this.#device.createBuffer({
        size: UNIFORM_CHUNK,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        label: "uniforms",
      }),
      data: new ArrayBuffer(UNIFORM_CHUNK),
    };
  }

  /** Returns a recording's chunks (after its submit, or unsubmitted) in the order taken. */
  give(chunks: readonly UniformChunk[]): void {
    // Reversed, so the next recording takes them in the same order (and finds its groups).
    for (let i = chunks.length - 1; i >= 0; i--) this.#free.push(chunks[i]);
  }

  /** Destroys the free chunks. */
  clear(): void {
    for (const c of this.#free) c.buffer.destroy();
    this.#free = [];
  }
}

/**
 * The one place where WGSL sources get their structural variants: the storage type
 * (f32 or f16) and shared fragments from wgsl/_lib. Numeric knobs are `override`
 * constants instead, set per pipeline.
 *
 * A kernel file refers to its storage scalar as `DT` and to `vec4<DT>` as `DT4`;
 * `ACC` is always f32 (accumulation).
 *
 * @module
 */

/** The storage scalar type of a kernel variant. */
export type StorageType = "f32" | "f16";

/** Options of {@linkcode composeWgsl}. */
export interface ComposeOptions {
  /** The storage type DT; default "f32". */
  storage?: StorageType;
  /** Also enable f16 when the storage is f32 (e.g. an f16 input of an f32 kernel). */
  enableF16?: boolean;
  /** Shared fragments (wgsl/_lib sources) placed before the kernel. */
  libs?: readonly string[];
}

/** A composed source and the number of prelude lines before the kernel's own text. */
export interface Composed {
  /** The complete WGSL module. */
  source: string;
  /** Lines before the kernel file's first line (for error line numbers). */
  preludeLines: number;
}

/** Composes a kernel file with its storage-type aliases and shared fragments. */
export function composeWgsl(kernel: string, options: ComposeOptions = {}): Composed {
  const storage = options.storage ?? "f32";
  if (storage !== "f32" && storage !== "f16") {
    throw new TypeError(`Storage type must be f32 or f16, got ${JSON.stringify(storage)}`);
  }
  const lines: string[] = [];
  if (storage === "f16" || options.enableF16) lines.push("enable f16;");
  lines.push(`alias DT = ${storage};`, `alias DT4 = vec4<${storage}>;`, "alias ACC = f32;");
  for (const lib of options.libs ?? []) lines.push(...lib.trimEnd().split("\n"));
  const prelude = lines.join("\n") + "\n";
  return { source: prelude + kernel, preludeLines: lines.length };
}

/**
 * Replaces each `//@NAME` line of a kernel source with the lines `blocks[NAME]`, at that
 * line's indent: code written out per shape by the host (e.g. named accumulators, which GPU
 * compilers keep in registers where a loop-indexed private array may go to local memory).
 * Throws naming `file` when a block has no marker.
 */
export function expandMarkers(
  source: string,
  blocks: Record<string, readonly string[]>,
  file: string,
): string {
  let out = source;
  for (const [marker, lines] of Object.entries(blocks)) {
    let found = false;
    out = out.replace(/^( *)\/\/@(\w+)\n/gm, (whole, indent: string, name: string) => {
      if (name !== marker) return whole;
      found = true;
      return lines.map((l) => indent + l + "\n").join("");
    });
    if (!found) throw new Error(`${file}: no //@${marker} marker`);
  }
  return out;
}

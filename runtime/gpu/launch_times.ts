/**
 * Summaries of a profiling Recorder's launch times (runtime/gpu/kernel.ts; `generate
 * --profile-step`):
 * per kernel name, the GPU time of all its launches, largest first.
 *
 * @module
 */
import type { LaunchTime } from "./kernel.ts";

/** One kernel's share of a profiled recording. */
export interface KernelTime {
  /** The kernel spec's name. */
  name: string;
  /** GPU ms of all its launches. */
  ms: number;
  /** Its launches. */
  launches: number;
}

/** Launch times summed per kernel name, largest total first (ties by name). */
export function byKernel(times: readonly LaunchTime[]): KernelTime[] {
  const by = new Map<string, KernelTime>();
  for (const t of times) {
    const k = by.get(t.name) ?? { name: t.name, ms: 0, launches: 0 };
    k.ms += t.ms;
    k.launches++;
    by.set(t.name, k);
  }
  return [...by.values()].sort((a, b) => b.ms - a.ms || a.name.localeCompare(b.name));
}

/** A text table of {@linkcode byKernel}'s rows: ms, share of the total, launches, name. */
export function formatKernelTimes(rows: readonly KernelTime[]): string {
  const total = rows.reduce((s, r) => s + r.ms, 0);
  const lines = rows.map((r) =>
    `${r.ms.toFixed(2).padStart(10)} ms ${
      (total > 0 ? (100 * r.ms) / total : 0).toFixed(1).padStart(5)
    } % ${String(r.launches).padStart(5)}×  ${r.name}`
  );
  lines.push(`${total.toFixed(2).padStart(10)} ms total`);
  return lines.join("\n");
}

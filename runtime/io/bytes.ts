/**
 * Byte-array helpers shared by the file readers and writers.
 *
 * @module
 */

/** The bytes of `parts`, one after another, in one new array. */
export function concatBytes(
  parts: readonly (ArrayLike<number> & { length: number })[],
): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * File-system questions the loaders and commands ask.
 *
 * @module
 */

/** True when `path` exists (a file or a folder; anything `Deno.stat` can read). */
export async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

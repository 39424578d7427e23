/**
 * JSON.parse for checkpoint files and their metadata: a syntax error becomes a
 * CheckpointError naming the file (and the field, when the text is one).
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";

/**
 * Parses `text` as JSON.
 *
 * @throws {CheckpointError} "`file`: `field`: invalid JSON: …" on a syntax error.
 */
export function parseJson(text: string, file: string, field?: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(file, `invalid JSON: ${(e as Error).message}`, field);
  }
}

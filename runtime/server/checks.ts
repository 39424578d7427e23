/**
 * Checks of a request against the model it selected, made before the request is queued so
 * that a request the model cannot run is the client's 400 (naming the field), never a 500,
 * and never fails the other requests of its batch: the prompt against the model's
 * vocabulary.
 *
 * @module
 */
import { badRequest } from "./errors.ts";
import type { ModelEntry } from "./models.ts";

/**
 * Checks that the model's tokenizer can encode the prompt (at least one known word).
 * A model without a tokenizer accepts any prompt.
 * @throws {ApiError} 400 with param "prompt".
 */
export function checkPrompt(entry: ModelEntry, prompt: string): void {
  const tok = entry.pipeline.tokenizer;
  if (!tok) return;
  try {
    tok.encode(prompt);
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    const why = e.message.charAt(0).toLowerCase() + e.message.slice(1);
    throw badRequest(
      `Invalid value for 'prompt': ${why.replace(/\.$/, "")} (${entry.id}).`,
      "prompt",
    );
  }
}

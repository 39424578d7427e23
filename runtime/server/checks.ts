/**
 * Checks of a request against the model it selected, made before the request is queued so
 * that a request the model cannot run is the client's 400 (naming the field), never a 500,
 * and never fails the other requests of its batch: the prompt against the model's
 * vocabulary, the sampler against the model's own samplers and scheduler config.
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";
import { samplersFor } from "../model_defaults.ts";
import type { SamplerName } from "../pipeline.ts";
import { vpSamplerOptions } from "../sampling/vp_scheduler_config.ts";
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

/** The samplers a model can run: its architecture's, less those its scheduler config refuses. */
export function modelSamplers(entry: ModelEntry): SamplerName[] {
  return samplersFor(entry.pipeline.defaults).filter((s) => samplerRefusal(entry, s) === null);
}

/** Why the model's scheduler config refuses `sampler`, or null when it does not. */
function samplerRefusal(entry: ModelEntry, sampler: SamplerName): CheckpointError | null {
  if (sampler === "flow-euler") return null;
  const vp = entry.pipeline.vpSchedulers;
  if (!vp) return null; // a stand-in pipeline without scheduler configs
  try {
    vpSamplerOptions(vp, sampler);
    return null;
  } catch (e) {
    if (e instanceof CheckpointError) return e;
    throw e;
  }
}

/** A checkpoint error's message without the server's path of the file (clients see no paths). */
function withoutPath(e: CheckpointError): string {
  const prefix = `${e.file}: `;
  const m = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
  return m.replace(/\.$/, "");
}

/**
 * Checks `sampler` against the selected model's samplers (samplersFor) and its scheduler
 * config (vpSamplerOptions' CheckpointError).
 * @throws {ApiError} 400 with param "sampler", listing the model's samplers.
 */
export function checkSampler(entry: ModelEntry, sampler: string): SamplerName {
  const list = modelSamplers(entry).map((s) => `'${s}'`).join(", ") || "no sampler";
  if (!(samplersFor(entry.pipeline.defaults) as readonly string[]).includes(sampler)) {
    throw badRequest(
      `Invalid value for 'sampler': ${entry.id} samples with ${list}, not '${sampler}'.`,
      "sampler",
    );
  }
  const refused = samplerRefusal(entry, sampler as SamplerName);
  if (refused) {
    throw badRequest(
      `Invalid value for 'sampler': ${entry.id} cannot sample with '${sampler}': its ` +
        `scheduler config refuses it (${withoutPath(refused)}); it samples with ${list}.`,
      "sampler",
      "unsupported_value",
    );
  }
  return sampler as SamplerName;
}

/**
 * The playground's request body and page reset, as plain functions of playground.js: empty
 * fields are left out (server defaults apply), and a new run clears the last one's output.
 */
import { assertEquals } from "./assert.ts";
import { clearRun, requestBody } from "../runtime/server/playground/playground.js";

Deno.test("playground: empty fields are left out of the request", () => {
  const empty = { prompt: "red apple", model: "emoji-s", size: "64x64", sampler: "dpm++2m" };
  const body: Record<string, unknown> = requestBody(
    { ...empty, negative_prompt: " ", steps: "", guidance: "", seed: "", true_cfg: "", bits: "" },
    20,
  );
  assertEquals(body, { ...empty, stream: true, partial_images: 19 });
  const full: Record<string, unknown> = requestBody(
    { ...empty, negative_prompt: "sad", steps: "4", guidance: "0", seed: "7", true_cfg: "3" },
    20,
  );
  assertEquals(
    [
      full.negative_prompt,
      full.steps,
      full.guidance,
      full.seed,
      full.true_cfg,
      full.partial_images,
    ],
    ["sad", 4, 0, 7, 3, 3],
  );
});

Deno.test("playground: a new run clears the last one's output", () => {
  const els: Record<string, Record<string, unknown>> = {};
  const get = (id: string) =>
    els[id] ??= {
      hidden: false,
      textContent: "old",
      src: "data:old",
      removeAttribute(this: Record<string, unknown>, a: string) {
        delete this[a];
      },
    };
  clearRun(get);
  for (const id of ["result", "preview", "timings"]) assertEquals(els[id].hidden, true, id);
  for (const id of ["caption", "progress"]) assertEquals(els[id].textContent, "", id);
  assertEquals(els.preview.src, undefined);
});

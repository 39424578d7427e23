import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { CheckpointError } from "../errors.ts";
import { parseJson } from "./json.ts";

Deno.test("parseJson: the value, or an error naming the file and the field", () => {
  assertEquals(parseJson('{"a": [1]}', "f.json"), { a: [1] });
  const e = assertThrows(() => parseJson("{", "f.json", "x.y"), CheckpointError) as CheckpointError;
  assertEquals([e.file, e.field], ["f.json", "x.y"]);
  assertThrows(() => parseJson("nope", "g.json"), CheckpointError, "g.json: invalid JSON: ");
});

Deno.test("parseJson: Python's NaN, Infinity and -Infinity outside strings", () => {
  const v = parseJson(
    '{"lambda_min_clipped": -Infinity, "a": [Infinity, NaN, 1], "s": "-Infinity \\" NaN"}',
    "scheduler_config.json",
  ) as Record<string, unknown>;
  assertEquals(v.lambda_min_clipped, -Infinity);
  assertEquals(v.a, [Infinity, NaN, 1]);
  assertEquals(v.s, '-Infinity " NaN');
  // Only as values: a bare word elsewhere is still a syntax error naming the file.
  assertThrows(() => parseJson("{Infinity: 1}", "h.json"), CheckpointError, "h.json: invalid JSON");
  assertThrows(() => parseJson("[Infinityy]", "h.json"), CheckpointError, "h.json: invalid JSON");
});

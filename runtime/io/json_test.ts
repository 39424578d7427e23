import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { CheckpointError } from "../errors.ts";
import { parseJson } from "./json.ts";

Deno.test("parseJson: the value, or an error naming the file and the field", () => {
  assertEquals(parseJson('{"a": [1]}', "f.json"), { a: [1] });
  const e = assertThrows(() => parseJson("{", "f.json", "x.y"), CheckpointError) as CheckpointError;
  assertEquals([e.file, e.field], ["f.json", "x.y"]);
  assertThrows(() => parseJson("nope", "g.json"), CheckpointError, "g.json: invalid JSON: ");
});
